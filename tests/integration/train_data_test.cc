// The train job's data handling end to end with the foak-worker binary on the
// debug model: what the info output reports about the data (bad lines
// skipped, truncated and dropped examples), validation from a fraction of the
// train file evaluated once at the end (eval_steps 0), and no evaluation
// lines without validation data.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/worker_run.h"
#include "nlohmann/json.hpp"

namespace foak {
namespace {

using testing::TempDir;

int Worker(const std::string& args, std::string* err) { return testing::RunWorker(args, err); }

std::vector<nlohmann::json> Metrics(const std::string& path) { return testing::ReadMetrics(path); }

TEST(TrainData, BadTruncatedAndDroppedLinesAreReportedAndValidationRunsAtTheEnd) {
  testing::TempDir dir("train_data_test");
  const std::string model = dir.path() + "/model";
  std::string err;
  ASSERT_EQ(Worker("init-model --config " + std::string(FOAK_SOURCE_DIR) +
                       "/examples/debug_model/config.json --out " + model + " --seed 1",
                   &err),
            0)
      << err;
  // prompt_completion lines; line 3 is malformed, line 5's prompt fills
  // max_seq_len (its completion is cut off: dropped), line 6 is truncated.
  std::string data;
  for (int i = 0; i < 40; ++i) {
    if (i == 2) {
      data += "{\"prompt\": 5}\n";
    } else if (i == 4) {
      data += "{\"prompt\": \"" + std::string(80, 'p') + "\", \"completion\": \"c\"}\n";
    } else if (i == 5) {
      data += "{\"prompt\": \"q\", \"completion\": \"" + std::string(80, 'c') + "\"}\n";
    } else {
      data += "{\"prompt\": \"" + std::to_string(i) + " + 1 = \", \"completion\": \"" +
              std::to_string(i + 1) + "\"}\n";
    }
  }
  const std::string train = dir.path() + "/train.jsonl";
  ASSERT_TRUE(WriteFileAtomically(train, data).ok());
  auto job = [&](const std::string& dataset_extra, const std::string& out) {
    const std::string path = dir.path() + "/job.json";
    EXPECT_TRUE(WriteFileAtomically(path, R"({"model": ")" + model + R"(", "output_dir": ")" +
                                              out + R"(", "device": "cpu",
        "dataset": {"train": ")" + train + "\"" + dataset_extra + R"(},
        "hyperparameters": {"learning_rate": 0.003, "max_steps": 3, "batch_size": 2,
                            "max_seq_len": 48, "precision": "fp32"}})")
                    .ok());
    return path;
  };

  // Without skip_bad_lines the malformed line fails the job up front.
  ASSERT_EQ(Worker("train --job " + job("", dir.path() + "/out0"), &err), 1);
  EXPECT_NE(err.find(train + ":3:"), std::string::npos) << err;
  EXPECT_FALSE(PathExists(dir.path() + "/out0"));

  ASSERT_EQ(Worker("train --job " + job(R"(, "skip_bad_lines": true, "validation_split": 0.25)",
                                        dir.path() + "/out1"),
                   &err),
            0)
      << err;
  EXPECT_NE(err.find("prompt_completion format"), std::string::npos) << err;
  EXPECT_NE(err.find("1 bad lines skipped"), std::string::npos) << err;
  EXPECT_NE(err.find("skipped bad line: " + train + ":3:"), std::string::npos) << err;
  EXPECT_NE(err.find("validation data:"), std::string::npos) << err;
  EXPECT_NE(err.find("evaluated at the end"), std::string::npos) << err;
  const auto lines = Metrics(dir.path() + "/out1/metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u) << "3 steps + 1 evaluation";
  EXPECT_EQ(lines[3].at("step"), 3);
  EXPECT_GT(lines[3].at("eval_loss").get<double>(), 0.0);
  EXPECT_GT(lines[3].at("eval_tokens").get<int64_t>(), 0);
  EXPECT_GT(lines[3].at("eval_examples").get<int64_t>(), 0);

  // Truncation and dropping are counted (train and validation split together
  // hold lines 5 and 6; whichever split holds them reports them).
  EXPECT_NE(err.find(" truncated to max_seq_len"), std::string::npos) << err;
  EXPECT_TRUE(err.find("1 truncated to max_seq_len") != std::string::npos) << err;
  EXPECT_TRUE(err.find("1 dropped") != std::string::npos) << err;

  // No validation data: no evaluation lines.
  ASSERT_EQ(Worker("train --job " + job(R"(, "skip_bad_lines": true)", dir.path() + "/out2"),
                   &err),
            0)
      << err;
  for (const auto& line : Metrics(dir.path() + "/out2/metrics.jsonl")) {
    EXPECT_FALSE(line.contains("eval_loss"));
  }
}

}  // namespace
}  // namespace foak
