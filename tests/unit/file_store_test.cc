// Uploaded files: stored only when complete and checksummed, size limits,
// listing and deleting, leftovers of a crashed upload removed on open; and the
// per-job worker tokens that go with them in foakd's data folder.
#include "server/storage/file_store.h"

#include <sys/stat.h>

#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "common/sha256.h"
#include "server/domain/worker_tokens.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

std::unique_ptr<FileStore> OpenStore(const std::string& root, int64_t limit, int64_t* clock) {
  FileStoreOptions o;
  o.root = root;
  o.max_file_bytes = limit;
  o.now_ms = [clock] { return ++*clock; };
  auto store = FileStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

TEST(Sha256Hex, KnownDigest) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(FileStore, UploadInChunksThenGetListPathDelete) {
  testing::TempDir dir("files");
  int64_t clock = 0;
  auto store = OpenStore(dir.path(), 1 << 20, &clock);
  const std::string body = "{\"text\": \"one\"}\n{\"text\": \"two\"}\n";
  auto upload = store->BeginUpload("train.jsonl", "", body.size(), Sha256Hex(body));
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Append(body.substr(0, 5)).ok());
  EXPECT_TRUE(store->List().value().empty());  // not visible while uploading
  ASSERT_TRUE((*upload)->Append(body.substr(5)).ok());
  absl::StatusOr<StoredFile> f = (*upload)->Commit();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->filename, "train.jsonl");
  EXPECT_EQ(f->purpose, "dataset");
  EXPECT_EQ(f->size_bytes, static_cast<int64_t>(body.size()));
  EXPECT_EQ(f->sha256, Sha256Hex(body));
  EXPECT_EQ(ReadFileToString(store->PathOf(f->id).value()).value(), body);

  auto second = store->BeginUpload("b.jsonl", "dataset", 1, "");
  ASSERT_TRUE((*second)->Append("x").ok());
  StoredFile b = (*second)->Commit().value();
  std::vector<StoredFile> list = store->List().value();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].id, b.id);  // newest first
  EXPECT_EQ(store->Get(f->id).value().sha256, f->sha256);

  ASSERT_TRUE(store->Delete(f->id).ok());
  EXPECT_EQ(store->Get(f->id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Delete(f->id).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Get("../etc/passwd").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FileStore, BadUploadsStoreNothing) {
  testing::TempDir dir("files");
  int64_t clock = 0;
  auto store = OpenStore(dir.path(), 10, &clock);
  // Wrong checksum.
  auto up = store->BeginUpload("a.jsonl", "", 3, Sha256Hex("abd"));
  ASSERT_TRUE((*up)->Append("abc").ok());
  absl::StatusOr<StoredFile> bad = (*up)->Commit();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("SHA-256"), std::string::npos) << bad.status();
  up->reset();
  // Fewer bytes than declared; more bytes than declared.
  auto short_up = store->BeginUpload("a.jsonl", "", 3, "");
  ASSERT_TRUE((*short_up)->Append("ab").ok());
  EXPECT_NE((*short_up)->Commit().status().message().find("ended after 2 bytes"), std::string::npos);
  auto long_up = store->BeginUpload("a.jsonl", "", 3, "");
  EXPECT_EQ((*long_up)->Append("abcd").code(), absl::StatusCode::kInvalidArgument);
  // Over the limit; bad names, purposes and checksums.
  EXPECT_EQ(store->BeginUpload("a.jsonl", "", 11, "").status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store->BeginUpload("../a.jsonl", "", 1, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->BeginUpload("a.jsonl", "model", 1, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->BeginUpload("a.jsonl", "", 1, "XYZ").status().code(),
            absl::StatusCode::kInvalidArgument);
  short_up->reset();
  long_up->reset();
  EXPECT_TRUE(store->List().value().empty());
  EXPECT_TRUE(ListDir(dir.path()).value().empty()) << "temp files must be gone";
}

TEST(FileStore, OpenRemovesLeftoversOfACrashedUpload) {
  testing::TempDir dir("files");
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir.path(), "file-0000000000000001.tmp"), "x").ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir.path(), "file-0000000000000002.data"), "x").ok());
  int64_t clock = 0;
  auto store = OpenStore(dir.path(), 100, &clock);
  EXPECT_TRUE(ListDir(dir.path()).value().empty());
}

TEST(WorkerTokens, PerJobStableAcrossRestartsAndKeyIsPrivate) {
  testing::TempDir dir("tokens");
  const std::string key = JoinPath(dir.path(), "worker_token.key");
  auto a = WorkerTokens::Open(key);
  ASSERT_TRUE(a.ok()) << a.status();
  struct stat st;
  ASSERT_EQ(stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string token = (*a)->TokenFor("job-1");
  EXPECT_EQ(token.size(), 64u);
  EXPECT_NE(token, (*a)->TokenFor("job-2"));
  EXPECT_TRUE((*a)->Verify("job-1", token));
  EXPECT_FALSE((*a)->Verify("job-2", token));
  EXPECT_FALSE((*a)->Verify("job-1", ""));
  auto b = WorkerTokens::Open(key);  // foakd restarted: same key, same tokens
  EXPECT_EQ((*b)->TokenFor("job-1"), token);
}

}  // namespace
}  // namespace foak
