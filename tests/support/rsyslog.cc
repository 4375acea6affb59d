#include "support/rsyslog.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "support/loopback.h"

namespace podgate::testing {

namespace {

constexpr char kRsyslogd[] = "/usr/sbin/rsyslogd";

bool PrintUsAscii(char c) { return c >= 33 && c <= 126; }

class Reader {
 public:
  explicit Reader(absl::string_view s) : s_(s) {}
  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[pos_]; }
  size_t pos() const { return pos_; }
  absl::string_view Rest() const { return s_.substr(std::min(pos_, s_.size())); }

  absl::Status Expect(char c, absl::string_view where) {
    if (Peek() != c || AtEnd()) {
      return Error(absl::StrCat("expected '", std::string(1, c), "' ", where));
    }
    ++pos_;
    return absl::OkStatus();
  }
  // A header field: 1..max printable US-ASCII characters up to the next space.
  absl::StatusOr<std::string> Field(absl::string_view what, size_t max) {
    size_t start = pos_;
    while (!AtEnd() && Peek() != ' ') {
      if (!PrintUsAscii(Peek())) {
        return Error(absl::StrCat(what, " has a byte that is not printable US-ASCII"));
      }
      ++pos_;
    }
    if (pos_ == start || pos_ - start > max) {
      return Error(absl::StrCat(what, " is empty or longer than ", max));
    }
    return std::string(s_.substr(start, pos_ - start));
  }
  // SD-NAME: 1..32 of PRINTUSASCII except '=', SP, ']', '"'.
  absl::StatusOr<std::string> SdName(absl::string_view what) {
    size_t start = pos_;
    while (!AtEnd() && PrintUsAscii(Peek()) && Peek() != '=' && Peek() != ']' && Peek() != '"') {
      ++pos_;
    }
    if (pos_ == start || pos_ - start > 32) {
      return Error(absl::StrCat(what, " is not an SD-NAME (1 to 32 characters)"));
    }
    return std::string(s_.substr(start, pos_ - start));
  }
  absl::StatusOr<std::string> ParamValue() {
    std::string out;
    while (true) {
      if (AtEnd()) {
        return Error("PARAM-VALUE not closed by '\"'");
      }
      char c = s_[pos_++];
      if (c == '"') {
        return out;
      }
      if (c == ']') {
        return Error("unescaped ']' in PARAM-VALUE");
      }
      if (c == '\\' && !AtEnd() && (Peek() == '"' || Peek() == '\\' || Peek() == ']')) {
        out += s_[pos_++];
        continue;
      }
      out += c;
    }
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("RFC 5424: ", what, " at byte ", pos_));
  }

 private:
  absl::string_view s_;
  size_t pos_ = 0;
};

bool ValidTimestamp(absl::string_view t) {
  // FULL-DATE "T" PARTIAL-TIME TIME-OFFSET, e.g. 2026-12-01T03:21:17.123456Z.
  if (t == "-") {
    return true;
  }
  auto digits = [&](size_t at, size_t n) {
    if (at + n > t.size()) {
      return false;
    }
    for (size_t i = at; i < at + n; ++i) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(t[i]))) {
        return false;
      }
    }
    return true;
  };
  if (t.size() < 20 || !digits(0, 4) || t[4] != '-' || !digits(5, 2) || t[7] != '-' ||
      !digits(8, 2) || t[10] != 'T' || !digits(11, 2) || t[13] != ':' || !digits(14, 2) ||
      t[16] != ':' || !digits(17, 2)) {
    return false;
  }
  size_t i = 19;
  if (t[i] == '.') {
    size_t start = ++i;
    while (i < t.size() && absl::ascii_isdigit(static_cast<unsigned char>(t[i]))) {
      ++i;
    }
    if (i == start || i - start > 6) {
      return false;
    }
  }
  absl::string_view offset = t.substr(i);
  return offset == "Z" || (offset.size() == 6 && (offset[0] == '+' || offset[0] == '-') &&
                           digits(i + 1, 2) && offset[3] == ':' && digits(i + 4, 2));
}

}  // namespace

std::string SyslogMessage::Param(absl::string_view sd_id, absl::string_view name) const {
  for (const Element& e : structured_data) {
    if (e.id == sd_id) {
      for (const auto& [n, v] : e.params) {
        if (n == name) {
          return v;
        }
      }
    }
  }
  return "";
}

bool SyslogMessage::HasParam(absl::string_view sd_id, absl::string_view name) const {
  for (const Element& e : structured_data) {
    if (e.id == sd_id) {
      for (const auto& [n, v] : e.params) {
        if (n == name) {
          return true;
        }
      }
    }
  }
  return false;
}

absl::StatusOr<SyslogMessage> ParseRfc5424(absl::string_view raw) {
  SyslogMessage m;
  m.raw = std::string(raw);
  Reader r(raw);
  if (absl::Status s = r.Expect('<', "(PRI)"); !s.ok()) {
    return s;
  }
  std::string pri;
  while (absl::ascii_isdigit(static_cast<unsigned char>(r.Peek())) && pri.size() < 4) {
    pri += r.Peek();
    if (absl::Status s = r.Expect(r.Peek(), ""); !s.ok()) {
      return s;
    }
  }
  if (pri.empty() || pri.size() > 3 || !absl::SimpleAtoi(pri, &m.pri) || m.pri > 191) {
    return r.Error("PRI is not 0 to 191");
  }
  if (absl::Status s = r.Expect('>', "after PRI"); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> version = r.Field("VERSION", 3);
  if (!version.ok()) {
    return version.status();
  }
  if (!absl::SimpleAtoi(*version, &m.version) || m.version < 1) {
    return r.Error("VERSION is not a number from 1");
  }
  struct FieldSpec {
    std::string* out;
    const char* name;
    size_t max;
  };
  for (const FieldSpec& f :
       {FieldSpec{&m.timestamp, "TIMESTAMP", 64}, FieldSpec{&m.hostname, "HOSTNAME", 255},
        FieldSpec{&m.app_name, "APP-NAME", 48}, FieldSpec{&m.procid, "PROCID", 128},
        FieldSpec{&m.msgid, "MSGID", 32}}) {
    if (absl::Status s = r.Expect(' ', absl::StrCat("before ", f.name)); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::string> v = r.Field(f.name, f.max);
    if (!v.ok()) {
      return v.status();
    }
    *f.out = *v;
  }
  if (!ValidTimestamp(m.timestamp)) {
    return r.Error(absl::StrCat("TIMESTAMP \"", m.timestamp, "\" is not RFC 3339"));
  }
  if (absl::Status s = r.Expect(' ', "before STRUCTURED-DATA"); !s.ok()) {
    return s;
  }
  if (r.Peek() == '-') {
    (void)r.Expect('-', "");
  } else {
    if (r.Peek() != '[') {
      return r.Error("STRUCTURED-DATA is neither '-' nor an SD-ELEMENT");
    }
    while (r.Peek() == '[' && !r.AtEnd()) {
      (void)r.Expect('[', "");
      SyslogMessage::Element e;
      absl::StatusOr<std::string> id = r.SdName("SD-ID");
      if (!id.ok()) {
        return id.status();
      }
      e.id = *id;
      while (r.Peek() == ' ') {
        (void)r.Expect(' ', "");
        absl::StatusOr<std::string> name = r.SdName("PARAM-NAME");
        if (!name.ok()) {
          return name.status();
        }
        if (absl::Status s = r.Expect('=', "after PARAM-NAME"); !s.ok()) {
          return s;
        }
        if (absl::Status s = r.Expect('"', "before PARAM-VALUE"); !s.ok()) {
          return s;
        }
        absl::StatusOr<std::string> value = r.ParamValue();
        if (!value.ok()) {
          return value.status();
        }
        e.params.emplace_back(*name, *value);
      }
      if (absl::Status s = r.Expect(']', "closing the SD-ELEMENT"); !s.ok()) {
        return s;
      }
      m.structured_data.push_back(std::move(e));
    }
  }
  if (!r.AtEnd()) {
    if (absl::Status s = r.Expect(' ', "before MSG"); !s.ok()) {
      return s;
    }
    absl::string_view msg = r.Rest();
    if (absl::StartsWith(msg, "\xEF\xBB\xBF")) {
      m.bom = true;
      msg.remove_prefix(3);
    }
    m.msg = std::string(msg);
  }
  return m;
}

absl::StatusOr<std::unique_ptr<RsyslogServer>> RsyslogServer::Start(const TestPki& pki) {
  if (!std::filesystem::exists(kRsyslogd)) {
    return absl::FailedPreconditionError(
        absl::StrCat(kRsyslogd,
                     " is missing: install rsyslog and rsyslog-openssl "
                     "(tools/install-deps.sh)"));
  }
  std::unique_ptr<RsyslogServer> server(new RsyslogServer());
  server->pki_ = pki;
  server->dir_ = MakeTempDir("podgate-rsyslog");
  server->output_ = server->dir_ + "/received.log";
  if (absl::Status s = server->Launch(); !s.ok()) {
    return s;
  }
  return server;
}

RsyslogServer::~RsyslogServer() { (void)Stop(/*kill=*/true); }

absl::Status RsyslogServer::Launch() {
  const std::string work = dir_ + "/work";
  std::filesystem::create_directories(work);
  auto port_file = [&](const char* name) { return absl::StrCat(dir_, "/", name, ".port"); };
  for (const char* name : {"tcp", "tls", "mtls"}) {
    std::filesystem::remove(port_file(name));
  }
  auto tls_input = [&](const char* name, int port, const char* auth_mode) {
    return absl::StrCat("input(type=\"imtcp\" name=\"", name, "\" address=\"127.0.0.1\" port=\"",
                        port, "\" listenPortFileName=\"", port_file(name),
                        "\" streamDriver.name=\"ossl\" streamDriver.mode=\"1\" "
                        "streamDriver.authMode=\"",
                        auth_mode, "\" streamDriver.caFile=\"", pki_.ca_cert,
                        "\" streamDriver.certFile=\"", pki_.server_cert,
                        "\" streamDriver.keyFile=\"", pki_.server_key, "\")\n");
  };
  // escapeControlCharactersOnReceive off: a message is stored exactly as sent (a raw newline in
  // it stays one, which proves the octet-counted framing); the template JSON-escapes each
  // message into one line.
  // queue.timeoutShutdown: on SIGTERM rsyslogd writes out what it has already read (its default
  // 1.5 s discards the rest of its main queue, more than the sink's 1 MiB replay window on a
  // loaded machine); the receiver podgate's docs ask for (one that does not drop what it took
  // in). What it had not read yet is still lost, and the replay window still covers that.
  std::string conf = absl::StrCat(
      "global(workDirectory=\"", work,
      "\" maxMessageSize=\"256k\" parser.escapeControlCharactersOnReceive=\"off\")\n",
      "main_queue(queue.timeoutShutdown=\"10000\")\n",
      "module(load=\"imtcp\" maxSessions=\"100\")\n",
      "input(type=\"imtcp\" name=\"tcp\" address=\"127.0.0.1\" port=\"", tcp_port_,
      "\" listenPortFileName=\"", port_file("tcp"), "\")\n", tls_input("tls", tls_port_, "anon"),
      tls_input("mtls", mtls_port_, "x509/certvalid"),
      "template(name=\"raw\" type=\"string\" string=\"%rawmsg:::json%\\n\")\n",
      "action(type=\"omfile\" file=\"", output_, "\" template=\"raw\" flushOnTXEnd=\"on\")\n");
  const std::string conf_path = dir_ + "/rsyslog.conf";
  {
    std::ofstream out(conf_path);
    out << conf;
    if (!out) {
      return absl::InternalError(absl::StrCat("cannot write ", conf_path));
    }
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start(kRsyslogd, {"-n", "-f", conf_path, "-i", dir_ + "/rsyslogd.pid"});
  if (!p.ok()) {
    return p.status();
  }
  process_ = *std::move(p);
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  for (auto [name, port] : {std::pair<const char*, int*>{"tcp", &tcp_port_},
                            {"tls", &tls_port_},
                            {"mtls", &mtls_port_}}) {
    // rsyslogd writes the port file only for port 0 (the first start); on a restart on the
    // same port, the kernel's table of sockets says when the listener is open (the old process
    // has exited, so a listener on the port is the new one's). Not a probe connection:
    // rsyslogd 8.2302 closes the descriptor of a TLS connection whose handshake fails twice
    // (a probe that connects and closes is one), and a connection accepted in between on the
    // same descriptor number is closed under it unread (rsyslogd logs "epoll_ctl failed on fd
    // N ... Bad file descriptor"): a test's next delivery was acknowledged by the kernel and
    // never written.
    const bool known = *port > 0;
    while (true) {
      if (known) {
        if (ListensOnLoopback(*port)) {
          break;
        }
      } else {
        std::ifstream in(port_file(name));
        std::string text;
        if (in && std::getline(in, text) &&
            absl::SimpleAtoi(absl::StripAsciiWhitespace(text), port) && *port > 0) {
          break;
        }
      }
      if (process_->WaitExit(absl::ZeroDuration()).ok()) {
        return absl::InternalError(
            absl::StrCat("rsyslogd exited at start: ", absl::StrJoin(process_->Lines(), "\n")));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("rsyslogd did not open its ", name,
                         " listener: ", absl::StrJoin(process_->Lines(), "\n")));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  return absl::OkStatus();
}

absl::Status RsyslogServer::Stop(bool kill) {
  if (process_ == nullptr) {
    return absl::OkStatus();
  }
  process_->Signal(kill ? SIGKILL : SIGTERM);
  process_->Signal(SIGCONT);  // a frozen rsyslogd takes SIGTERM only once it runs again
  absl::StatusOr<int> status = process_->WaitExit(absl::Seconds(15));
  for (std::string& line : process_->Lines()) {
    old_log_.push_back(std::move(line));
  }
  process_.reset();
  if (!status.ok()) {
    return status.status();
  }
  return absl::OkStatus();
}

absl::Status RsyslogServer::Freeze() {
  if (process_ == nullptr) {
    return absl::FailedPreconditionError("rsyslogd is not running");
  }
  return process_->Freeze();
}

absl::Status RsyslogServer::Restart(bool kill) {
  if (absl::Status s = Stop(kill); !s.ok()) {
    return s;
  }
  return Launch();
}

std::vector<std::string> RsyslogServer::RawMessages() const {
  std::ifstream in(output_, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string data = buffer.str();
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t end = data.find('\n', start);
    if (end == std::string::npos) {
      break;  // an incomplete last line is not a message yet
    }
    std::string line = data.substr(start, end - start);
    start = end + 1;
    nlohmann::json decoded =
        nlohmann::json::parse(absl::StrCat("\"", line, "\""), nullptr, /*allow_exceptions=*/false);
    out.push_back(decoded.is_string() ? decoded.get<std::string>()
                                      : absl::StrCat("<undecodable line> ", line));
  }
  return out;
}

size_t RsyslogServer::CountMessages() const {
  std::ifstream in(output_, std::ios::binary);
  size_t lines = 0;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    lines += std::count(buffer, buffer + in.gcount(), '\n');
  }
  return lines;
}

absl::StatusOr<std::vector<SyslogMessage>> RsyslogServer::Messages() const {
  std::vector<SyslogMessage> out;
  for (const std::string& raw : RawMessages()) {
    absl::StatusOr<SyslogMessage> m = ParseRfc5424(raw);
    if (!m.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", out.size(), " \"", raw, "\": ", m.status().message()));
    }
    out.push_back(*std::move(m));
  }
  return out;
}

absl::StatusOr<std::vector<SyslogMessage>> RsyslogServer::WaitForMessages(
    size_t count, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    size_t have = CountMessages();
    if (have >= count) {
      return Messages();
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("rsyslogd received ", have, " messages, not ", count));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::vector<std::string> RsyslogServer::Log() const {
  std::vector<std::string> out = old_log_;
  if (process_ != nullptr) {
    for (std::string& line : process_->Lines()) {
      out.push_back(std::move(line));
    }
  }
  return out;
}

}  // namespace podgate::testing
