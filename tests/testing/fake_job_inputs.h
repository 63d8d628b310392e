// The smallest inputs foakd accepts in a job spec: a "model folder" with a
// config.json and a one-line JSONL dataset. Enough for the coordinator's
// checks (server/domain/job_spec.h), which never load a model; tests that
// really train use the debug model instead.
#ifndef FOAK_TESTS_TESTING_FAKE_JOB_INPUTS_H_
#define FOAK_TESTS_TESTING_FAKE_JOB_INPUTS_H_

#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"

namespace foak::testing {

struct FakeJobInputs {
  std::string model;  // <dir>/model, holding config.json
  std::string train;  // <dir>/train.jsonl
};

inline FakeJobInputs WriteFakeJobInputs(const std::string& dir) {
  FakeJobInputs in{JoinPath(dir, "model"), JoinPath(dir, "train.jsonl")};
  EXPECT_TRUE(MakeDirs(in.model).ok());
  EXPECT_TRUE(WriteFileAtomically(JoinPath(in.model, "config.json"), "{}").ok());
  EXPECT_TRUE(WriteFileAtomically(in.train, "{\"text\": \"hi\"}\n").ok());
  return in;
}

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_FAKE_JOB_INPUTS_H_
