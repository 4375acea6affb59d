// Translates a QueryRequest into one parameterized SELECT for either store's SQL dialect.
// Values never enter the SQL text: every filter value is a bound parameter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::audit {

enum class Dialect { kSqlite, kPostgres };

struct SqlParam {
  bool is_int = false;
  int64_t int_value = 0;
  std::string text;
};

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
    "session_id, argv_text";

}  // namespace podgate::audit
