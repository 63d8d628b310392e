// Tenants end to end below the transport: the API tokens file (what it
// accepts, what each rejection says, that a token is never echoed), the job
// store's tenant column (filtering, per-tenant request ids, and a database
// of schema 1 opening and migrating in place), and uploaded files' tenant.
#include <sqlite3.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "server/domain/api_tokens.h"
#include "server/storage/file_store.h"
#include "server/storage/sqlite_job_store.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

constexpr char kAliceToken[] = "alice-token-0123456789";
constexpr char kBobToken[] = "bob-token-abcdefghijkl";

std::unique_ptr<ApiTokens> Tokens(const std::string& text) {
  absl::StatusOr<std::vector<ApiTokenEntry>> entries = ParseApiTokens(text, "tokens.txt");
  EXPECT_TRUE(entries.ok()) << entries.status();
  return ApiTokens::FromEntries(entries.ok() ? *entries : std::vector<ApiTokenEntry>{});
}

TEST(ApiTokens, RawAndDigestLinesBindTokensToTenants) {
  auto tokens = Tokens(absl::StrCat("# team tokens\n\nalice ", kAliceToken, "\n  bob\tsha256:",
                                    Sha256Hex(kBobToken), "  \nalice sha256:",
                                    Sha256Hex("alice-second-token-xyz"), "\n"));
  EXPECT_EQ(tokens->size(), 3u);
  EXPECT_EQ(tokens->Authenticate(true, absl::StrCat("Bearer ", kAliceToken)).value(), "alice");
  EXPECT_EQ(tokens->Authenticate(true, absl::StrCat("Bearer ", kBobToken)).value(), "bob");
  EXPECT_EQ(tokens->Authenticate(true, "Bearer alice-second-token-xyz").value(), "alice");
}

TEST(ApiTokens, EachRejectionIsUnauthenticatedAndNeverEchoesTheToken) {
  auto tokens = Tokens(absl::StrCat("alice ", kAliceToken, "\n"));
  absl::StatusOr<std::string> missing = tokens->Authenticate(false, "");
  EXPECT_TRUE(absl::IsUnauthenticated(missing.status())) << missing.status();
  EXPECT_NE(missing.status().message().find("authorization: Bearer <token>"), std::string::npos)
      << missing.status();

  absl::StatusOr<std::string> basic = tokens->Authenticate(true, "Basic YWxpY2U6cHc=");
  EXPECT_TRUE(absl::IsUnauthenticated(basic.status())) << basic.status();
  EXPECT_NE(basic.status().message().find("'Bearer <token>'"), std::string::npos) << basic.status();
  EXPECT_EQ(basic.status().message().find("YWxpY2U6cHc="), std::string::npos) << basic.status();

  for (const std::string& wrong :
       {std::string("Bearer wrong-token-0123456789"), std::string("Bearer "),
        absl::StrCat("Bearer ", kAliceToken, "x"), absl::StrCat("Bearer  ", kAliceToken)}) {
    absl::StatusOr<std::string> r = tokens->Authenticate(true, wrong);
    EXPECT_TRUE(absl::IsUnauthenticated(r.status())) << wrong << ": " << r.status();
    EXPECT_EQ(r.status().message().find("wrong-token"), std::string::npos) << r.status();
    EXPECT_EQ(r.status().message().find(kAliceToken), std::string::npos) << r.status();
  }
  // The scheme is case-insensitive (RFC 7235).
  EXPECT_EQ(tokens->Authenticate(true, absl::StrCat("bearer ", kAliceToken)).value(), "alice");
  // A digest in the file is not itself a token.
  auto hashed = Tokens(absl::StrCat("bob sha256:", Sha256Hex(kBobToken), "\n"));
  EXPECT_FALSE(hashed->Authenticate(true, absl::StrCat("Bearer sha256:", Sha256Hex(kBobToken))).ok());
}

TEST(ApiTokens, FileErrorsNameTheLineAndWhatWouldBeRight) {
  struct Case {
    std::string text;
    std::string expected;  // in the message
  };
  const std::vector<Case> cases = {
      {"alice\n", "tokens.txt:1: expected 'TENANT sha256:HEX' or 'TENANT TOKEN'"},
      {"# c\nalice a b\n", "tokens.txt:2: expected"},
      {"al/ice 0123456789abcdefgh\n", "tenant 'al/ice' is not 1 to 64 of letters"},
      {"-----BEGIN CERTIFICATE-----\n", "tokens.txt:1: tenant '-----BEGIN' is not"},
      {"alice short\n", "has 5 characters; use at least 16"},
      {"alice sha256:abc\n", "after 'sha256:' expected 64 hex digits"},
      {absl::StrCat("alice ", kAliceToken, "\nbob sha256:", Sha256Hex(kAliceToken), "\n"),
       "tokens.txt:2: the same token as line 1"},
      {"# nothing\n\n", "holds no token"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<ApiTokenEntry>> r = ParseApiTokens(c.text, "tokens.txt");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
    EXPECT_NE(r.status().message().find(c.expected), std::string::npos)
        << "text: " << c.text << "\nmessage: " << r.status().message();
    EXPECT_EQ(r.status().message().find(kAliceToken), std::string::npos) << r.status();
  }
}

TEST(ApiTokens, ReloadSwapsTokensAndKeepsThemWhenTheFileBreaks) {
  testing::TempDir dir("api_tokens");
  const std::string path = JoinPath(dir.path(), "tokens");
  ASSERT_TRUE(WriteFileAtomically(path, absl::StrCat("alice ", kAliceToken, "\n")).ok());
  absl::StatusOr<std::unique_ptr<ApiTokens>> tokens = ApiTokens::Load(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_TRUE(WriteFileAtomically(path, absl::StrCat("bob ", kBobToken, "\n")).ok());
  ASSERT_EQ((*tokens)->Reload().value(), 1u);
  EXPECT_FALSE((*tokens)->Authenticate(true, absl::StrCat("Bearer ", kAliceToken)).ok());
  EXPECT_EQ((*tokens)->Authenticate(true, absl::StrCat("Bearer ", kBobToken)).value(), "bob");
  ASSERT_TRUE(WriteFileAtomically(path, "bob\n").ok());
  EXPECT_FALSE((*tokens)->Reload().ok());
  EXPECT_EQ((*tokens)->Authenticate(true, absl::StrCat("Bearer ", kBobToken)).value(), "bob");
  EXPECT_TRUE(absl::IsNotFound(ApiTokens::Load(JoinPath(dir.path(), "absent")).status()));
}

TEST(ApiTokens, AnotherTenantsJobLooksAbsent) {
  EXPECT_TRUE(CheckJobTenant("job-1", "alice", "alice").ok());
  EXPECT_TRUE(CheckJobTenant("job-1", "alice", "").ok());  // no tokens: all visible
  absl::Status other = CheckJobTenant("job-1", "alice", "bob");
  EXPECT_TRUE(absl::IsNotFound(other)) << other;
  EXPECT_EQ(other.message(), "no job 'job-1'");
}

JobRecord Job(const std::string& tenant, const std::string& request_id, const std::string& spec) {
  JobRecord j;
  j.tenant = tenant;
  j.request_id = request_id;
  j.spec_json = spec;
  return j;
}

TEST(SqliteJobStoreTenants, ListFiltersByTenantAndRequestIdsArePerTenant) {
  SqliteJobStoreOptions o;
  o.path = ":memory:";
  auto store = OpenSqliteJobStore(o);
  ASSERT_TRUE(store.ok()) << store.status();
  JobRecord a = (*store)->CreateJob(Job("alice", "r1", "{\"a\":1}")).value();
  JobRecord b = (*store)->CreateJob(Job("bob", "r1", "{\"b\":1}")).value();
  EXPECT_NE(a.id, b.id);  // the same request id, two tenants: two jobs
  EXPECT_EQ((*store)->GetJob(a.id)->tenant, "alice");
  // A retry by bob returns bob's job, never alice's.
  EXPECT_EQ((*store)->CreateJob(Job("bob", "r1", "{\"b\":1}"))->id, b.id);
  EXPECT_TRUE(absl::IsAlreadyExists((*store)->CreateJob(Job("bob", "r1", "{\"a\":1}")).status()));

  ListJobsQuery q;
  q.tenant = "alice";
  ListJobsPage page = (*store)->ListJobs(q).value();
  ASSERT_EQ(page.jobs.size(), 1u);
  EXPECT_EQ(page.jobs[0].id, a.id);
  q.tenant = "";
  EXPECT_EQ((*store)->ListJobs(q)->jobs.size(), 2u);
  q.tenant = "carol";
  EXPECT_TRUE((*store)->ListJobs(q)->jobs.empty());
}

void ExecSql(sqlite3* db, const char* sql) {
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
}

TEST(SqliteJobStoreTenants, ADatabaseOfSchemaOneOpensAndMigrates) {
  testing::TempDir dir("job_store_v1");
  const std::string path = JoinPath(dir.path(), "foakd.db");
  {
    // Schema 1 as foakd wrote it before tenants, with one job.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ExecSql(db, R"sql(
CREATE TABLE jobs (
  seq_no INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, request_id TEXT,
  spec_json TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT '', priority INTEGER NOT NULL DEFAULT 0,
  gpus INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,
  max_restarts INTEGER NOT NULL DEFAULT 0, create_time_ms INTEGER NOT NULL,
  update_time_ms INTEGER NOT NULL, last_event_seq INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX jobs_request_id ON jobs(request_id) WHERE request_id IS NOT NULL;
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE events (job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL, time_ms INTEGER NOT NULL, kind TEXT NOT NULL,
  payload_json TEXT NOT NULL, PRIMARY KEY (job_id, seq)) WITHOUT ROWID;
CREATE TABLE checkpoints (job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL, path TEXT NOT NULL, time_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, step)) WITHOUT ROWID;
INSERT INTO jobs (id, request_id, spec_json, state, create_time_ms, update_time_ms, last_event_seq)
  VALUES ('job-00000000000000aa', 'old-request', '{}', 'SUCCEEDED', 1, 2, 1);
INSERT INTO events VALUES ('job-00000000000000aa', 1, 1, 'state', '{"state":"SUCCEEDED"}');
PRAGMA user_version = 1;
)sql");
    sqlite3_close(db);
  }
  SqliteJobStoreOptions o;
  o.path = path;
  {
    auto store = OpenSqliteJobStore(o);
    ASSERT_TRUE(store.ok()) << store.status();
    absl::StatusOr<JobRecord> old = (*store)->GetJob("job-00000000000000aa");
    ASSERT_TRUE(old.ok()) << old.status();
    EXPECT_EQ(old->tenant, "");
    EXPECT_EQ(old->state, JobState::kSucceeded);
    EXPECT_EQ((*store)->ListEvents(old->id, 0, 10)->size(), 1u);
    // Request ids are per tenant now: alice may reuse the old one.
    JobRecord alice = (*store)->CreateJob(Job("alice", "old-request", "{}")).value();
    EXPECT_NE(alice.id, old->id);
    EXPECT_EQ((*store)->CreateJob(Job("", "old-request", "{}"))->id, old->id);
  }
  auto again = OpenSqliteJobStore(o);  // migrated once; opening again changes nothing
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->ListJobs(ListJobsQuery())->jobs.size(), 2u);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* version = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &version, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(version), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(version, 0), 2);
  sqlite3_finalize(version);
  sqlite3_close(db);
}

TEST(FileStoreTenants, AnotherTenantsFileLooksAbsent) {
  testing::TempDir dir("file_store_tenants");
  FileStoreOptions o;
  o.root = dir.path();
  auto files = FileStore::Open(o);
  ASSERT_TRUE(files.ok()) << files.status();
  auto upload = (*files)->BeginUpload("a.jsonl", "dataset", 3, "", "alice");
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Append("abc").ok());
  StoredFile f = (*upload)->Commit().value();
  EXPECT_EQ(f.tenant, "alice");
  EXPECT_EQ((*files)->Get(f.id, "alice")->tenant, "alice");
  EXPECT_EQ((*files)->Get(f.id)->tenant, "alice");  // no tokens: all visible
  absl::Status other = (*files)->Get(f.id, "bob").status();
  EXPECT_TRUE(absl::IsNotFound(other)) << other;
  EXPECT_EQ(other.message(), absl::StrCat("no uploaded file '", f.id, "'"));
  EXPECT_TRUE(absl::IsNotFound((*files)->PathOf(f.id, "bob").status()));
  EXPECT_TRUE((*files)->PathOf(f.id, "alice").ok());
  EXPECT_EQ((*files)->List("alice")->size(), 1u);
  EXPECT_TRUE((*files)->List("bob")->empty());
  EXPECT_EQ((*files)->List()->size(), 1u);
}

}  // namespace
}  // namespace foak
