#include "server/storage/sqlite_job_store.h"

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/status_macros.h"

namespace foak {
namespace {

// 1: the first schema. 2: jobs.tenant (who submitted the job), and request
// ids unique per tenant instead of globally. Migrate() brings an older
// database up to date in place; a newer one is refused.
constexpr int kSchemaVersion = 2;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  seq_no INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  request_id TEXT,
  spec_json TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT '',
  priority INTEGER NOT NULL DEFAULT 0,
  gpus INTEGER NOT NULL DEFAULT 0,
  restarts INTEGER NOT NULL DEFAULT 0,
  max_restarts INTEGER NOT NULL DEFAULT 0,
  create_time_ms INTEGER NOT NULL,
  update_time_ms INTEGER NOT NULL,
  last_event_seq INTEGER NOT NULL DEFAULT 0,
  tenant TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_tenant_request_id ON jobs(tenant, request_id)
  WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant, seq_no);
CREATE TABLE IF NOT EXISTS events (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  path TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, step)
) WITHOUT ROWID;
)sql";

constexpr const char* kJobColumns =
    "seq_no, id, IFNULL(request_id, ''), spec_json, state, reason, message, priority, gpus, "
    "restarts, max_restarts, create_time_ms, update_time_ms, tenant";

// A prepared statement, finalised when it goes out of scope.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status(const char* what) const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("job store: preparing ", what, ": ", sqlite3_errmsg(db_)));
  }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindNull(int i) { sqlite3_bind_null(stmt_, i); }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, col))
             : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

JobRecord ReadJob(const Statement& s, int64_t* seq_no) {
  JobRecord j;
  if (seq_no) *seq_no = s.Int(0);
  j.id = s.Text(1);
  j.request_id = s.Text(2);
  j.spec_json = s.Text(3);
  j.state = JobStateFromName(s.Text(4)).value_or(JobState::kFailed);
  j.reason = s.Text(5);
  j.message = s.Text(6);
  j.priority = s.Int(7);
  j.gpus = s.Int(8);
  j.restarts = s.Int(9);
  j.max_restarts = s.Int(10);
  j.create_time_ms = s.Int(11);
  j.update_time_ms = s.Int(12);
  j.tenant = s.Text(13);
  return j;
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string StatePayload(const JobRecord& j) {
  return absl::StrCat("{\"state\":", Quote(JobStateName(j.state)), ",\"reason\":", Quote(j.reason),
                      ",\"message\":", Quote(j.message), ",\"restarts\":", j.restarts, "}");
}

class SqliteJobStore : public JobStore {
 public:
  SqliteJobStore(sqlite3* db, SqliteJobStoreOptions options)
      : db_(db), options_(std::move(options)), rng_(std::random_device{}()) {
    if (!options_.now_ms) options_.now_ms = SystemNowMs;
  }
  ~SqliteJobStore() override { sqlite3_close(db_); }

  absl::Status Init() {
    RETURN_IF_ERROR(Exec("PRAGMA foreign_keys = ON"));
    if (options_.path != ":memory:") {
      RETURN_IF_ERROR(Exec("PRAGMA journal_mode = WAL"));
      RETURN_IF_ERROR(Exec("PRAGMA synchronous = NORMAL"));
    }
    sqlite3_busy_timeout(db_, options_.busy_timeout_ms);
    int64_t version = 0;
    {  // finalized before any schema change (an open statement locks the schema)
      Statement v(db_, "PRAGMA user_version");
      RETURN_IF_ERROR(v.status("the schema version"));
      if (v.Step() == SQLITE_ROW) version = v.Int(0);
    }
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job store ", options_.path, " has schema version ", version, "; this foakd knows up to ",
          kSchemaVersion, ": use a newer foakd or another --db file"));
    }
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status migrated = Migrate();
    if (migrated.ok()) migrated = Exec(kSchema);
    if (migrated.ok()) migrated = Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion));
    RETURN_IF_ERROR(Exec(migrated.ok() ? "COMMIT" : "ROLLBACK"));
    return migrated;
  }

  // A jobs table of schema 1 (or an unversioned one) lacks the tenant
  // column: add it (its jobs get tenant '', foakd without tokens) and replace
  // the global request-id index with the per-tenant one kSchema creates.
  absl::Status Migrate() {
    bool has_table = false;
    bool has_tenant = false;
    {  // finalized before the schema changes (an open statement locks the table)
      Statement columns(db_, "SELECT name FROM pragma_table_info('jobs')");
      RETURN_IF_ERROR(columns.status("the jobs table's columns"));
      while (columns.Step() == SQLITE_ROW) {
        has_table = true;
        if (columns.Text(0) == "tenant") has_tenant = true;
      }
    }
    if (!has_table || has_tenant) return absl::OkStatus();
    RETURN_IF_ERROR(Exec("ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''"));
    return Exec("DROP INDEX IF EXISTS jobs_request_id");
  }

  absl::StatusOr<JobRecord> CreateJob(const JobRecord& in) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    auto result = CreateLocked(in);
    RETURN_IF_ERROR(Exec(result.ok() ? "COMMIT" : "ROLLBACK"));
    return result;
  }

  absl::StatusOr<JobRecord> GetJob(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    return GetLocked(id);
  }

  absl::StatusOr<ListJobsPage> ListJobs(const ListJobsQuery& q) override {
    if (q.page_size < 1 || q.page_size > 1000) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_size = ", q.page_size, "; expected 1 to 1000"));
    }
    int64_t before = INT64_MAX;
    if (!q.page_token.empty()) {
      if (q.page_token.rfind("p", 0) != 0 || !absl::SimpleAtoi(q.page_token.substr(1), &before) ||
          before <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "page_token = '", q.page_token,
            "' is not one this server issued; pass next_page_token from the previous page"));
      }
    }
    absl::MutexLock lock(&mu_);
    const std::string sql = absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE seq_no < ?1",
                                         q.state ? " AND state = ?3" : "",
                                         q.tenant.empty() ? "" : " AND tenant = ?4",
                                         " ORDER BY seq_no DESC LIMIT ?2");
    Statement s(db_, sql.c_str());
    RETURN_IF_ERROR(s.status("ListJobs"));
    s.Bind(1, before);
    s.Bind(2, q.page_size + 1);
    if (q.state) s.Bind(3, std::string(JobStateName(*q.state)));
    if (!q.tenant.empty()) s.Bind(4, q.tenant);
    ListJobsPage page;
    int64_t last = 0;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      if (static_cast<int64_t>(page.jobs.size()) == q.page_size) {
        page.next_page_token = absl::StrCat("p", last);
        break;
      }
      page.jobs.push_back(ReadJob(s, &last));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("listing jobs");
    return page;
  }

  absl::StatusOr<JobRecord> UpdateState(const std::string& id, JobState to,
                                        const std::string& reason, const std::string& message,
                                        bool count_restart) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    auto result = UpdateLocked(id, to, reason, message, count_restart);
    RETURN_IF_ERROR(Exec(result.ok() ? "COMMIT" : "ROLLBACK"));
    return result;
  }

  absl::StatusOr<int64_t> AppendEvent(const std::string& id, const std::string& kind,
                                      const std::string& payload_json) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    auto result = AppendLocked(id, kind, payload_json);
    RETURN_IF_ERROR(Exec(result.ok() ? "COMMIT" : "ROLLBACK"));
    return result;
  }

  absl::StatusOr<std::vector<JobEvent>> ListEvents(const std::string& id, int64_t after_seq,
                                                   int64_t limit) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(GetLocked(id).status());
    Statement s(db_,
                "SELECT seq, time_ms, kind, payload_json FROM events WHERE job_id = ?1 AND seq > ?2 "
                "ORDER BY seq LIMIT ?3");
    RETURN_IF_ERROR(s.status("ListEvents"));
    s.Bind(1, id);
    s.Bind(2, after_seq);
    s.Bind(3, limit);
    std::vector<JobEvent> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      out.push_back(JobEvent{id, s.Int(0), s.Int(1), s.Text(2), s.Text(3)});
    }
    if (rc != SQLITE_DONE) return Error("listing events");
    return out;
  }

  absl::Status AddCheckpoint(const CheckpointRecord& c) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status status = [&]() -> absl::Status {
      RETURN_IF_ERROR(GetLocked(c.job_id).status());
      Statement s(db_, "INSERT OR REPLACE INTO checkpoints (job_id, step, path, time_ms) "
                       "VALUES (?1, ?2, ?3, ?4)");
      RETURN_IF_ERROR(s.status("AddCheckpoint"));
      s.Bind(1, c.job_id);
      s.Bind(2, c.step);
      s.Bind(3, c.path);
      s.Bind(4, c.time_ms ? c.time_ms : options_.now_ms());
      if (s.Step() != SQLITE_DONE) return Error("recording a checkpoint");
      return AppendLocked(c.job_id, "checkpoint",
                          absl::StrCat("{\"step\":", c.step, ",\"path\":", Quote(c.path), "}"))
          .status();
    }();
    RETURN_IF_ERROR(Exec(status.ok() ? "COMMIT" : "ROLLBACK"));
    return status;
  }

  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(GetLocked(id).status());
    Statement s(db_, "SELECT step, path, time_ms FROM checkpoints WHERE job_id = ?1 ORDER BY step");
    RETURN_IF_ERROR(s.status("ListCheckpoints"));
    s.Bind(1, id);
    std::vector<CheckpointRecord> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.push_back({id, s.Int(0), s.Text(1), s.Int(2)});
    if (rc != SQLITE_DONE) return Error("listing checkpoints");
    return out;
  }

  absl::StatusOr<std::vector<JobRecord>> JobsInStates(const std::vector<JobState>& states) override {
    absl::MutexLock lock(&mu_);
    std::vector<JobRecord> out;
    if (states.empty()) return out;
    std::string in;
    for (JobState st : states) {
      absl::StrAppend(&in, in.empty() ? "'" : ",'", JobStateName(st), "'");
    }
    // State names are constants, so building the IN list is safe; it uses the state index.
    Statement s(db_, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE state IN (", in,
                                  ") ORDER BY seq_no").c_str());
    RETURN_IF_ERROR(s.status("JobsInStates"));
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ReadJob(s, nullptr));
    if (rc != SQLITE_DONE) return Error("listing jobs by state");
    return out;
  }

  absl::StatusOr<std::vector<std::pair<JobState, int64_t>>> CountJobsByState() override {
    absl::MutexLock lock(&mu_);
    Statement s(db_, "SELECT state, COUNT(*) FROM jobs GROUP BY state");
    RETURN_IF_ERROR(s.status("CountJobsByState"));
    std::vector<std::pair<JobState, int64_t>> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      if (std::optional<JobState> st = JobStateFromName(s.Text(0)); st.has_value()) {
        out.emplace_back(*st, s.Int(1));
      }
    }
    if (rc != SQLITE_DONE) return Error("counting jobs by state");
    return out;
  }

  absl::StatusOr<std::optional<JobEvent>> LastEvent(const std::string& id,
                                                    const std::string& kind) override {
    absl::MutexLock lock(&mu_);
    Statement s(db_, "SELECT seq, time_ms, kind, payload_json FROM events WHERE job_id = ?1 AND "
                     "kind = ?2 ORDER BY seq DESC LIMIT 1");
    RETURN_IF_ERROR(s.status("LastEvent"));
    s.Bind(1, id);
    s.Bind(2, kind);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return std::optional<JobEvent>();
    if (rc != SQLITE_ROW) return Error("reading the last event");
    return std::optional<JobEvent>(JobEvent{id, s.Int(0), s.Int(1), s.Text(2), s.Text(3)});
  }

  absl::StatusOr<std::optional<JobEvent>> LastRankEvent(const std::string& id,
                                                        const std::string& kind,
                                                        int64_t rank) override {
    absl::MutexLock lock(&mu_);
    // Walks the job's events newest first (the primary key) and stops at the
    // first match; ranks report in turn, so that is a few rows back. CASE
    // keeps json_extract off a payload that is not JSON (it would fail the
    // whole query); such a payload counts as rank 0's, as LastEvent sees it.
    Statement s(db_, "SELECT seq, time_ms, kind, payload_json FROM events WHERE job_id = ?1 AND "
                     "kind = ?2 AND IFNULL(CASE WHEN json_valid(payload_json) THEN "
                     "json_extract(payload_json, '$.rank') END, 0) = ?3 "
                     "ORDER BY seq DESC LIMIT 1");
    RETURN_IF_ERROR(s.status("LastRankEvent"));
    s.Bind(1, id);
    s.Bind(2, kind);
    s.Bind(3, rank);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return std::optional<JobEvent>();
    if (rc != SQLITE_ROW) return Error("reading the last event of a rank");
    return std::optional<JobEvent>(JobEvent{id, s.Int(0), s.Int(1), s.Text(2), s.Text(3)});
  }

 private:
  absl::Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      absl::Status s = absl::InternalError(
          absl::StrCat("job store ", options_.path, ": ", err ? err : "error", " (", sql.substr(0, 40), ")"));
      sqlite3_free(err);
      return s;
    }
    return absl::OkStatus();
  }

  absl::Status Error(const char* what) const {
    return absl::InternalError(
        absl::StrCat("job store ", options_.path, ": ", what, ": ", sqlite3_errmsg(db_)));
  }

  std::string NewId() {
    std::uniform_int_distribution<uint64_t> dist;
    char buf[24];
    snprintf(buf, sizeof buf, "job-%016llx", static_cast<unsigned long long>(dist(rng_)));
    return buf;
  }

  absl::StatusOr<JobRecord> GetLocked(const std::string& id) {
    Statement s(db_, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE id = ?1").c_str());
    RETURN_IF_ERROR(s.status("GetJob"));
    s.Bind(1, id);
    const int rc = s.Step();
    if (rc == SQLITE_ROW) return ReadJob(s, nullptr);
    if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("no job '", id, "'"));
    return Error("reading a job");
  }

  absl::StatusOr<JobRecord> CreateLocked(const JobRecord& in) {
    if (!in.request_id.empty()) {
      Statement s(db_, absl::StrCat("SELECT ", kJobColumns,
                                    " FROM jobs WHERE request_id = ?1 AND tenant = ?2")
                           .c_str());
      RETURN_IF_ERROR(s.status("CreateJob"));
      s.Bind(1, in.request_id);
      s.Bind(2, in.tenant);
      if (s.Step() == SQLITE_ROW) {
        JobRecord existing = ReadJob(s, nullptr);
        if (existing.spec_json == in.spec_json) return existing;
        return absl::AlreadyExistsError(absl::StrCat(
            "request_id '", in.request_id, "' already created job ", existing.id,
            " with a different spec; use a new request_id for a new job"));
      }
    }
    JobRecord j = in;
    j.id = NewId();
    j.state = JobState::kQueued;
    j.restarts = 0;
    j.create_time_ms = j.update_time_ms = options_.now_ms();
    if (j.reason.empty()) j.reason = "Created";
    Statement s(db_,
                "INSERT INTO jobs (id, request_id, spec_json, state, reason, message, priority, gpus, "
                "restarts, max_restarts, create_time_ms, update_time_ms, tenant) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?10, ?11)");
    RETURN_IF_ERROR(s.status("CreateJob"));
    s.Bind(1, j.id);
    if (j.request_id.empty()) {
      s.BindNull(2);
    } else {
      s.Bind(2, j.request_id);
    }
    s.Bind(3, j.spec_json);
    s.Bind(4, std::string(JobStateName(j.state)));
    s.Bind(5, j.reason);
    s.Bind(6, j.message);
    s.Bind(7, j.priority);
    s.Bind(8, j.gpus);
    s.Bind(9, j.max_restarts);
    s.Bind(10, j.create_time_ms);
    s.Bind(11, j.tenant);
    if (s.Step() != SQLITE_DONE) return Error("creating a job");
    RETURN_IF_ERROR(AppendLocked(j.id, "state", StatePayload(j)).status());
    return j;
  }

  absl::StatusOr<JobRecord> UpdateLocked(const std::string& id, JobState to,
                                         const std::string& reason, const std::string& message,
                                         bool count_restart) {
    ASSIGN_OR_RETURN(JobRecord j, GetLocked(id));
    RETURN_IF_ERROR(CheckTransition(id, j.state, to));
    // Only STARTING/RUNNING may go back to QUEUED.
    if (to == JobState::kQueued && count_restart) ++j.restarts;
    j.state = to;
    j.reason = reason;
    j.message = message;
    j.update_time_ms = options_.now_ms();
    Statement s(db_, "UPDATE jobs SET state = ?2, reason = ?3, message = ?4, restarts = ?5, "
                     "update_time_ms = ?6 WHERE id = ?1");
    RETURN_IF_ERROR(s.status("UpdateState"));
    s.Bind(1, id);
    s.Bind(2, std::string(JobStateName(to)));
    s.Bind(3, reason);
    s.Bind(4, message);
    s.Bind(5, j.restarts);
    s.Bind(6, j.update_time_ms);
    if (s.Step() != SQLITE_DONE) return Error("updating a job's state");
    RETURN_IF_ERROR(AppendLocked(id, "state", StatePayload(j)).status());
    return j;
  }

  absl::StatusOr<int64_t> AppendLocked(const std::string& id, const std::string& kind,
                                       const std::string& payload_json) {
    Statement bump(db_, "UPDATE jobs SET last_event_seq = last_event_seq + 1 WHERE id = ?1 "
                        "RETURNING last_event_seq");
    RETURN_IF_ERROR(bump.status("AppendEvent"));
    bump.Bind(1, id);
    const int rc = bump.Step();
    if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("no job '", id, "'"));
    if (rc != SQLITE_ROW) return Error("numbering an event");
    const int64_t seq = bump.Int(0);
    while (bump.Step() == SQLITE_ROW) {
    }
    Statement s(db_, "INSERT INTO events (job_id, seq, time_ms, kind, payload_json) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)");
    RETURN_IF_ERROR(s.status("AppendEvent"));
    s.Bind(1, id);
    s.Bind(2, seq);
    s.Bind(3, options_.now_ms());
    s.Bind(4, kind);
    s.Bind(5, payload_json);
    if (s.Step() != SQLITE_DONE) return Error("appending an event");
    return seq;
  }

  absl::Mutex mu_;
  sqlite3* db_;
  SqliteJobStoreOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> OpenSqliteJobStore(const SqliteJobStoreOptions& options) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(options.path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string err = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open the job store ", options.path, ": ",
                                               err, " (is its folder there and writable?)"));
  }
  auto store = std::make_unique<SqliteJobStore>(db, options);
  RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<JobStore>(std::move(store));
}

}  // namespace foak
