// JobStore on SQLite (Debian's libsqlite3): one database file in WAL mode
// (readers never block the writer, and a crash loses at most the transaction
// in flight), synchronous=NORMAL, foreign keys on, a busy timeout so a
// second process waits instead of failing. One connection behind a mutex:
// foakd's write rate (a few events per training step) is far below what one
// connection sustains. The schema carries a version in PRAGMA user_version;
// opening a database from a newer foak fails with a clear error.
#ifndef FOAK_SERVER_STORAGE_SQLITE_JOB_STORE_H_
#define FOAK_SERVER_STORAGE_SQLITE_JOB_STORE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/storage/job_store.h"

namespace foak {

struct SqliteJobStoreOptions {
  std::string path;  // database file; ":memory:" for a private in-memory one (tests)
  int busy_timeout_ms = 5000;
  // Milliseconds since the epoch; tests pass a fake clock.
  std::function<int64_t()> now_ms;
};

// Opens (creating if needed) the database at options.path.
absl::StatusOr<std::unique_ptr<JobStore>> OpenSqliteJobStore(const SqliteJobStoreOptions& options);

}  // namespace foak

#endif  // FOAK_SERVER_STORAGE_SQLITE_JOB_STORE_H_
