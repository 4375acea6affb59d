#include "audit/store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace podgate::audit {

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url) {
  constexpr absl::string_view kSqlite = "sqlite://";
  if (absl::StartsWith(url, kSqlite)) {
    const std::string path = url.substr(kSqlite.size());
    if (path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("store URL ", url, " has no file path (sqlite:///path/to/audit.db)"));
    }
    return OpenSqliteStore(path);
  }
  if (absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://")) {
    return OpenPostgresStore(url);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("store URL ", url, " must start with sqlite:// or postgresql://"));
}

absl::StatusOr<std::vector<StoredRow>> Store::ReadChainAfter(const std::string& chain_id,
                                                             int64_t after_sequence, int limit) {
  std::vector<StoredRow> rows;
  absl::Status s = ScanChain(chain_id, [&](const StoredRow& row) {
    if (row.sequence > after_sequence) {
      rows.push_back(row);
    }
    return static_cast<int>(rows.size()) < limit;
  });
  if (!s.ok()) {
    return s;
  }
  return rows;
}

}  // namespace podgate::audit
