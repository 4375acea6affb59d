// Translates a QueryRequest into one parameterized SELECT for either store's SQL dialect.
// Values never enter the SQL text: every filter value is a bound parameter.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::audit {

enum class Dialect { kSqlite, kPostgres };

// A bound parameter: text, a 64-bit integer or a byte string.
struct SqlParam {
  enum class Type { kText, kInt, kBytes };
  Type type = Type::kText;
  int64_t int_value = 0;
  std::string text;  // kText and kBytes
};

inline SqlParam SqlText(std::string value) {
  return SqlParam{SqlParam::Type::kText, 0, std::move(value)};
}
inline SqlParam SqlInt(int64_t value) { return SqlParam{SqlParam::Type::kInt, value, {}}; }
inline SqlParam SqlBytes(std::string value) {
  return SqlParam{SqlParam::Type::kBytes, 0, std::move(value)};
}

struct SqlQuery {
  std::string sql;
  std::vector<SqlParam> params;
  int page_size = 0;
  bool newest_first = false;
};

// Columns selected, in order: id, event_id, chain_id, sequence, stored_time_us, event, hash,
// previous_hash. The statement returns up to page_size + 1 rows: one more tells whether a next
// page exists.
absl::StatusOr<SqlQuery> BuildQuery(const podgate::audit::v1::QueryRequest& request,
                                    Dialect dialect);

// The columns every row read selects, for both stores.
inline constexpr char kRowColumns[] =
    "id, event_id, chain_id, sequence, stored_time_us, event, hash, previous_hash, "
    "event_time_us, kind, user_name, groups_text, namespace, pod, container, verdict, rule, "
    "session_id, argv_text, cluster, trace_id";

}  // namespace podgate::audit
