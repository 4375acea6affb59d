#include "audit/query_sql.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "audit/store.h"
#include "google/protobuf/util/time_util.h"

namespace podgate::audit {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr size_t kMaxValuesPerFilter = 100;
constexpr size_t kMaxValueBytes = 1024;

class Builder {
 public:
  explicit Builder(Dialect dialect) : dialect_(dialect) {}

  std::string Placeholder(SqlParam param) {
    params_.push_back(std::move(param));
    return absl::StrCat(dialect_ == Dialect::kSqlite ? "?" : "$", params_.size());
  }
  std::string Text(std::string value) { return Placeholder(SqlText(std::move(value))); }
  std::string Int(int64_t value) { return Placeholder(SqlInt(value)); }
  std::string Contains(const std::string& column, std::string needle) {
    const std::string fn = dialect_ == Dialect::kSqlite ? "instr" : "strpos";
    return absl::StrCat(fn, "(", column, ", ", Text(std::move(needle)), ") > 0");
  }

  void Where(std::string clause) { where_.push_back(std::move(clause)); }

  template <typename Values, typename ToSql>
  void AnyOf(const Values& values, ToSql to_sql) {
    if (values.empty()) {
      return;
    }
    std::vector<std::string> alternatives;
    for (const auto& value : values) {
      alternatives.push_back(to_sql(value));
    }
    where_.push_back(absl::StrCat("(", absl::StrJoin(alternatives, " OR "), ")"));
  }

  std::string WhereClause() const {
    return where_.empty() ? "" : absl::StrCat(" WHERE ", absl::StrJoin(where_, " AND "));
  }
  std::vector<SqlParam> TakeParams() { return std::move(params_); }

 private:
  Dialect dialect_;
  std::vector<SqlParam> params_;
  std::vector<std::string> where_;
};

template <typename Values>
absl::Status CheckValues(const char* field, const Values& values) {
  if (static_cast<size_t>(values.size()) > kMaxValuesPerFilter) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", values.size(), " values; the limit is ", kMaxValuesPerFilter));
  }
  return absl::OkStatus();
}

absl::Status CheckText(const char* field, const std::string& value) {
  if (value.size() > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": a value of ", value.size(),
                                                   " bytes; the limit is ", kMaxValueBytes));
  }
  return absl::OkStatus();
}

}  // namespace

std::string EncodePageToken(int64_t last_row_id, bool newest_first) {
  return absl::WebSafeBase64Escape(absl::StrCat("v1:", newest_first ? "d" : "a", ":", last_row_id));
}

absl::StatusOr<int64_t> DecodePageToken(const std::string& token, bool newest_first) {
  std::string raw;
  const std::string prefix = absl::StrCat("v1:", newest_first ? "d" : "a", ":");
  int64_t id = 0;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.rfind(prefix, 0) != 0 ||
      !absl::SimpleAtoi(absl::string_view(raw).substr(prefix.size()), &id) || id < 0) {
    return absl::InvalidArgumentError(
        "page_token: not a token from a previous page of this query (or newest_first changed)");
  }
  return id;
}

absl::StatusOr<int> ValidateQuery(const podgate::audit::v1::QueryRequest& r) {
  for (absl::Status s :
       {CheckValues("users", r.users()), CheckValues("user_prefixes", r.user_prefixes()),
        CheckValues("groups", r.groups()), CheckValues("clusters", r.clusters()),
        CheckValues("namespaces", r.namespaces()), CheckValues("pods", r.pods()),
        CheckValues("containers", r.containers()), CheckValues("kinds", r.kinds()),
        CheckValues("verdicts", r.verdicts()), CheckValues("rules", r.rules()),
        CheckValues("session_ids", r.session_ids()), CheckValues("trace_ids", r.trace_ids()),
        CheckText("argv_contains", r.argv_contains())}) {
    if (!s.ok()) {
      return s;
    }
  }
  for (const auto* list :
       {&r.users(), &r.user_prefixes(), &r.groups(), &r.clusters(), &r.namespaces(), &r.pods(),
        &r.containers(), &r.rules(), &r.session_ids(), &r.trace_ids()}) {
    for (const std::string& value : *list) {
      if (absl::Status s = CheckText("filter", value); !s.ok()) {
        return s;
      }
    }
  }
  if (r.page_size() < 0 || r.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: ", r.page_size(),
                                                   " is out of range (1 to ", kMaxPageSize,
                                                   "; 0 means ", kDefaultPageSize, ")"));
  }
  for (const auto* ts : {&r.start_time(), &r.end_time()}) {
    if (ts->seconds() < TimeUtil::kTimestampMinSeconds ||
        ts->seconds() > TimeUtil::kTimestampMaxSeconds || ts->nanos() < 0 ||
        ts->nanos() > 999999999) {
      return absl::InvalidArgumentError("start_time/end_time: not a valid timestamp");
    }
  }
  if (!r.page_token().empty()) {
    if (auto id = DecodePageToken(r.page_token(), r.newest_first()); !id.ok()) {
      return id.status();
    }
  }
  return r.page_size() == 0 ? kDefaultPageSize : r.page_size();
}

absl::StatusOr<SqlQuery> BuildQuery(const podgate::audit::v1::QueryRequest& r, Dialect dialect) {
  absl::StatusOr<int> page_size = ValidateQuery(r);
  if (!page_size.ok()) {
    return page_size.status();
  }
  Builder b(dialect);
  // Exact names and prefixes are one filter: any of them.
  std::vector<std::string> users;
  for (const std::string& v : r.users()) {
    users.push_back("user_name = " + b.Text(v));
  }
  for (const std::string& v : r.user_prefixes()) {
    // substr and length count characters in both databases; no LIKE, so no wildcard to escape.
    // (The casts tell PostgreSQL which length() is meant.)
    users.push_back(absl::StrCat("substr(user_name, 1, length(CAST(", b.Text(v),
                                 " AS TEXT))) = CAST(", b.Text(v), " AS TEXT)"));
  }
  b.AnyOf(users, [](const std::string& clause) { return clause; });
  b.AnyOf(r.groups(),
          [&](const std::string& v) { return b.Contains("groups_text", "\n" + v + "\n"); });
  // "" selects the records of events that name no cluster (from an exec before clusters).
  b.AnyOf(r.clusters(), [&](const std::string& v) { return "cluster = " + b.Text(v); });
  b.AnyOf(r.namespaces(), [&](const std::string& v) { return "namespace = " + b.Text(v); });
  b.AnyOf(r.pods(), [&](const std::string& v) { return "pod = " + b.Text(v); });
  b.AnyOf(r.containers(), [&](const std::string& v) { return "container = " + b.Text(v); });
  b.AnyOf(r.kinds(), [&](int v) { return "kind = " + b.Int(v); });
  b.AnyOf(r.verdicts(), [&](int v) { return "verdict = " + b.Int(v); });
  b.AnyOf(r.rules(), [&](const std::string& v) { return "rule = " + b.Text(v); });
  b.AnyOf(r.session_ids(), [&](const std::string& v) { return "session_id = " + b.Text(v); });
  // "" selects the records of events that carry no trace id.
  b.AnyOf(r.trace_ids(), [&](const std::string& v) { return "trace_id = " + b.Text(v); });
  if (r.has_start_time()) {
    b.Where("event_time_us >= " + b.Int(TimeUtil::TimestampToMicroseconds(r.start_time())));
  }
  if (r.has_end_time()) {
    b.Where("event_time_us < " + b.Int(TimeUtil::TimestampToMicroseconds(r.end_time())));
  }
  if (!r.argv_contains().empty()) {
    b.Where(b.Contains("argv_text", r.argv_contains()));
  }
  if (!r.page_token().empty()) {
    const int64_t last = *DecodePageToken(r.page_token(), r.newest_first());
    b.Where(absl::StrCat("id ", r.newest_first() ? "<" : ">", " ", b.Int(last)));
  }
  SqlQuery q;
  q.page_size = *page_size;
  q.newest_first = r.newest_first();
  q.sql = absl::StrCat("SELECT ", kRowColumns, " FROM records", b.WhereClause(), " ORDER BY id ",
                       r.newest_first() ? "DESC" : "ASC", " LIMIT ", q.page_size + 1);
  q.params = b.TakeParams();
  return q;
}

}  // namespace podgate::audit
