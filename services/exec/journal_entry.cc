#include "exec/journal_entry.h"

#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace podgate::exec {

bool IsJournalEntryId(std::string_view id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-')) {
      return false;
    }
  }
  return true;
}

bool IsJournalNumber(std::string_view n) {
  return !n.empty() && n.size() <= 20 &&
         n.find_first_not_of("0123456789") == std::string_view::npos;
}

namespace {

constexpr char kLaunchPrefix[] = "podgate-launch ";

// Parses the launch line (without its newline): a pid and start time, or "-" (not launched).
absl::Status ParseLaunchLine(std::string_view line, JournalEntry* e) {
  if (!line.starts_with(kLaunchPrefix)) {
    return absl::InvalidArgumentError("the launch line does not start with \"podgate-launch \"");
  }
  line.remove_prefix(sizeof(kLaunchPrefix) - 1);
  while (!line.empty() && line.back() == ' ') {
    line.remove_suffix(1);
  }
  if (line == "-") {
    e->pid.clear();
    e->start_ticks.clear();
    return absl::OkStatus();
  }
  const size_t space = line.find(' ');
  if (space == std::string_view::npos) {
    return absl::InvalidArgumentError("the launch line holds no start time");
  }
  e->pid = std::string(line.substr(0, space));
  e->start_ticks = std::string(line.substr(space + 1));
  if (!IsJournalNumber(e->pid) || !IsJournalNumber(e->start_ticks)) {
    return absl::InvalidArgumentError("the launch line's pid or start time is not a number");
  }
  return absl::OkStatus();
}

}  // namespace

std::string JournalLaunchLine(const std::string& pid, const std::string& start_ticks) {
  std::string line = pid.empty() ? absl::StrCat(kLaunchPrefix, "-")
                                 : absl::StrCat(kLaunchPrefix, pid, " ", start_ticks);
  line.resize(kJournalLaunchLineBytes - 1, ' ');
  line.push_back('\n');
  return line;
}

std::string EncodeJournalEntry(const JournalEntry& e) {
  nlohmann::json groups = nlohmann::json::array();
  for (const std::string& g : e.principal.groups()) {
    groups.push_back(g);
  }
  nlohmann::json j = {{"version", 2},
                      {"result_event_id", e.result_event_id},
                      {"close_event_id", e.close_event_id},
                      {"session_id", e.session_id},
                      {"trace_id", e.trace_id},
                      {"command_id", e.command_id},
                      {"user", e.principal.user()},
                      {"groups", groups},
                      {"namespace", e.target.namespace_()},
                      {"pod", e.target.pod()},
                      {"container", e.target.container()},
                      {"cluster", e.target.cluster()},
                      {"source_address", e.source_address},
                      {"started_unix_ms", absl::ToUnixMillis(e.started)},
                      {"session_opened_unix_ms", absl::ToUnixMillis(e.session_opened)},
                      {"line", e.line}};
  return absl::StrCat(JournalLaunchLine(e.pid, e.start_ticks),
                      j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "\n");
}

absl::StatusOr<JournalEntry> DecodeJournalEntry(const std::string& text) {
  JournalEntry e;
  std::string_view json_text = text;
  int64_t want_version = 1;  // an older exec's entry: JSON only, its pid inside
  if (!text.starts_with("{")) {
    if (text.size() < kJournalLaunchLineBytes || text[kJournalLaunchLineBytes - 1] != '\n') {
      return absl::InvalidArgumentError("the launch line is cut off");
    }
    if (absl::Status s =
            ParseLaunchLine(std::string_view(text).substr(0, kJournalLaunchLineBytes - 1), &e);
        !s.ok()) {
      return s;
    }
    json_text.remove_prefix(kJournalLaunchLineBytes);
    want_version = 2;
  }
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  auto str = [&](const char* key, std::string* out) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is missing or not a string"));
    }
    *out = it->get<std::string>();
    return absl::OkStatus();
  };
  auto millis = [&](const char* key, absl::Time* out) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is missing or not an integer"));
    }
    *out = absl::FromUnixMillis(it->get<int64_t>());
    return absl::OkStatus();
  };
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() ||
      version->get<int64_t>() != want_version) {
    return absl::InvalidArgumentError(absl::StrCat("\"version\" is not ", want_version,
                                                   want_version == 1
                                                       ? " (an entry without a launch line)"
                                                       : " (an entry with a launch line)"));
  }
  std::string user, ns, pod, container;
  std::vector<std::pair<const char*, std::string*>> fields = {
      {"result_event_id", &e.result_event_id},
      {"close_event_id", &e.close_event_id},
      {"session_id", &e.session_id},
      {"command_id", &e.command_id},
      {"user", &user},
      {"namespace", &ns},
      {"pod", &pod},
      {"container", &container},
      {"source_address", &e.source_address},
      {"line", &e.line}};
  if (want_version == 1) {
    fields.push_back({"pid", &e.pid});
    fields.push_back({"start_ticks", &e.start_ticks});
  }
  for (auto [key, out] : fields) {
    if (absl::Status s = str(key, out); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = millis("started_unix_ms", &e.started); !s.ok()) {
    return s;
  }
  if (absl::Status s = millis("session_opened_unix_ms", &e.session_opened); !s.ok()) {
    return s;
  }
  auto groups = j.find("groups");
  if (groups == j.end() || !groups->is_array()) {
    return absl::InvalidArgumentError("\"groups\" is missing or not an array");
  }
  for (const nlohmann::json& g : *groups) {
    if (!g.is_string()) {
      return absl::InvalidArgumentError("\"groups\" holds a value that is not a string");
    }
    e.principal.add_groups(g.get<std::string>());
  }
  if (!IsJournalEntryId(e.result_event_id) || e.close_event_id.empty()) {
    return absl::InvalidArgumentError("the event ids are not valid");
  }
  // The stop helper takes these as arguments and checks them strictly itself; refuse the
  // obviously wrong here so that a damaged entry is reported as such.
  if (want_version == 1 && (!IsJournalNumber(e.pid) || !IsJournalNumber(e.start_ticks))) {
    return absl::InvalidArgumentError("\"pid\" or \"start_ticks\" is not a number");
  }
  if (ns.empty() || pod.empty() || container.empty()) {
    return absl::InvalidArgumentError("the target is incomplete");
  }
  // Written by an exec from before clusters: the default cluster.
  if (auto cluster = j.find("cluster"); cluster != j.end()) {
    if (!cluster->is_string()) {
      return absl::InvalidArgumentError("\"cluster\" is not a string");
    }
    e.target.set_cluster(cluster->get<std::string>());
  }
  // Optional: entries written before trace context have none.
  if (auto trace_id = j.find("trace_id"); trace_id != j.end()) {
    if (!trace_id->is_string()) {
      return absl::InvalidArgumentError("\"trace_id\" is not a string");
    }
    e.trace_id = trace_id->get<std::string>();
  }
  e.principal.set_user(user);
  e.target.set_namespace_(ns);
  e.target.set_pod(pod);
  e.target.set_container(container);
  return e;
}

}  // namespace podgate::exec
