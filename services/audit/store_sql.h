// What the SQLite and PostgreSQL stores share: the schema migrations, the statements whose SQL
// both dialects agree on, the column order of a records row and the assembly of a query page.
// Each store keeps what is its own: connections, transactions, parameter binding, error
// mapping, how a batch finds the ids already stored and how retention deletes.
#pragma once

#include <string>
#include <vector>

#include "audit/query_sql.h"

namespace podgate::audit {

// The schema migrations in `dialect`, version 1 first. Version N is written once for both
// dialects, with the column types each spells differently filled in. Released versions are
// never edited (StoreSqlTest pins their text); a change is a new version.
const std::vector<std::string>& Migrations(Dialect dialect);

}  // namespace podgate::audit
