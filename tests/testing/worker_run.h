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
#include <utility>
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

struct WorkerResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a shell command and captures its exit code, stdout and stderr.
inline WorkerResult RunCapture(const std::string& command) {
  static int counter = 0;
  const std::string base = "/tmp/foak_run." + std::to_string(getpid()) + "." +
                           std::to_string(counter++);
  const std::string cmd = "(" + command + ") >" + base + ".out 2>" + base + ".err";
  const int status = std::system(cmd.c_str());
  WorkerResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFileToString(base + ".out").value_or("");
  r.err = ReadFileToString(base + ".err").value_or("");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

// Runs `foak-worker ARGS` (already shell-quoted where needed) and captures
// its exit code, stdout and stderr.
inline WorkerResult RunWorkerCapture(const std::string& args) {
  return RunCapture(std::string(FOAK_WORKER_BIN) + " " + args);
}

// The same with stdout dropped: returns the exit code, stderr in *err.
inline int RunWorker(const std::string& args, std::string* err) {
  WorkerResult r = RunWorkerCapture(args);
  *err = std::move(r.err);
  return r.exit_code;
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
