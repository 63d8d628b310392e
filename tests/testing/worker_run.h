// What the integration tests share to drive the foak-worker binary: a
// temporary folder removed at the end, one worker run with its stderr
// captured, and a metrics.jsonl reader.
#ifndef FOAK_TESTS_TESTING_WORKER_RUN_H_
#define FOAK_TESTS_TESTING_WORKER_RUN_H_

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace foak::testing {

// A fresh folder /tmp/foak_<tag>_XXXXXX, removed with its contents.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test") {
    std::string tmpl = "/tmp/foak_" + tag + "_XXXXXX";
    const char* dir = mkdtemp(tmpl.data());
    EXPECT_NE(dir, nullptr);
    path_ = dir == nullptr ? "/tmp" : dir;
  }
  ~TempDir() { RemoveTree(path_).IgnoreError(); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `foak-worker ARGS` (stdout discarded); returns its exit code and puts
// its stderr in *err.
inline int RunWorker(const std::string& args, std::string* err) {
  const std::string err_path = "/tmp/foak_worker_run." + std::to_string(getpid()) + ".err";
  const std::string cmd = std::string(FOAK_WORKER_BIN) + " " + args + " >/dev/null 2>" + err_path;
  const int status = std::system(cmd.c_str());
  *err = ReadFileToString(err_path).value_or("");
  std::remove(err_path.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The JSON lines of a metrics.jsonl file (empty when it is missing).
inline std::vector<nlohmann::json> ReadMetrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  const std::string text = ReadFileToString(path).value_or("");
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string line = text.substr(pos, end == std::string::npos ? end : end - pos);
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    pos = end == std::string::npos ? text.size() : end + 1;
  }
  return out;
}

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_WORKER_RUN_H_
