#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"

namespace foak {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/foak_common_test_XXXXXX";
  char* dir = mkdtemp(tmpl);
  EXPECT_NE(dir, nullptr);
  return dir;
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacros, PropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_FALSE(CheckEven(5).ok());
}

TEST(FileUtil, AtomicWriteReplacesContentsAndLeavesNoTemp) {
  std::string dir = TempDir();
  std::string path = JoinPath(dir, "a.txt");
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second, longer").ok());
  EXPECT_EQ(*ReadFileToString(path), "second, longer");
  EXPECT_FALSE(PathExists(path + ".tmp." + std::to_string(getpid())));
}

TEST(FileUtil, WriteIntoMissingFolderNamesThePath) {
  absl::Status s = WriteFileAtomically("/nonexistent_foak_dir/x.txt", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("/nonexistent_foak_dir/x.txt"), std::string::npos) << s;
}

TEST(FileUtil, ReadMissingFileIsNotFound) {
  auto r = ReadFileToString("/nonexistent_foak_file");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(FileUtil, MakeDirsCreatesParentsAndRejectsFiles) {
  std::string dir = TempDir();
  std::string deep = JoinPath(dir, "a/b/c");
  ASSERT_TRUE(MakeDirs(deep).ok());
  EXPECT_TRUE(PathExists(deep));
  EXPECT_TRUE(MakeDirs(deep).ok());  // idempotent
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "f"), "x").ok());
  EXPECT_FALSE(MakeDirs(JoinPath(dir, "f")).ok());
}

TEST(FileUtil, JoinPath) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "/b"), "a/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
}

}  // namespace
}  // namespace foak

namespace foak {
namespace {

TEST(FileUtil, RemoveTreeAndListDir) {
  char tmpl[] = "/tmp/foak_rm_test_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  ASSERT_TRUE(MakeDirs(JoinPath(dir, "x/y")).ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "x/y/f"), "1").ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "b"), "2").ok());
  auto names = ListDir(dir);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(*names, (std::vector<std::string>{"b", "x"}));
  ASSERT_TRUE(RemoveTree(JoinPath(dir, "x")).ok());
  EXPECT_FALSE(PathExists(JoinPath(dir, "x")));
  EXPECT_TRUE(RemoveTree(JoinPath(dir, "absent")).ok());
  ASSERT_TRUE(RemoveTree(dir).ok());
  EXPECT_FALSE(PathExists(dir));
  EXPECT_EQ(ListDir(dir).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace foak
