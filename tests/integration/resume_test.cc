// Exact resume, end to end on the debug model (examples/debug_model) with the
// real foak-worker binary:
//   - a run stopped right after checkpoint-8 (FOAK_TEST_EXIT_AFTER_CHECKPOINT,
//     which _exit(137)s as a SIGKILL would) and resumed with --resume latest
//     logs the same loss, grad norm, learning rate and tokens for EVERY step as
//     an uninterrupted run (compared as JSON number text, i.e. bit-identical
//     doubles), and ends with byte-identical weights and optimizer state; in
//     fp32 and bf16-mixed;
//   - a real SIGKILL at an arbitrary moment of a run that checkpoints every
//     step leaves only complete checkpoint-<step> folders (temps carry .tmp.),
//     and resuming from it finishes with one metrics line per step;
//   - resuming with a changed dataset or hyperparameter is refused naming the
//     difference, unless resume_ignore_mismatch; a fresh start into a folder
//     with checkpoints is refused;
//   - half-written checkpoints (a .tmp. folder, a folder without
//     trainer_state.json) are never picked;
//   - the same exact resume for a LoRA run (bf16-mixed, adapter dropout on, so
//     the RNG state matters) with validation data: every step's metrics AND
//     every eval_loss match the uninterrupted run, and the adapter and
//     optimizer state end byte-identical; and for a QLoRA run (NF4 base
//     re-made on resume), which also refuses other quantization settings.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/worker_run.h"
#include "nlohmann/json.hpp"
#include "worker/model/safetensors.h"

namespace foak {
namespace {

using testing::TempDir;

struct RunResult {
  int exit_code = -1;
  std::string err;
};

// Runs foak-worker with `args`; `env` is prepended ("NAME=value ").
RunResult Worker(const std::string& args, const std::string& env = "") {
  static int counter = 0;
  const std::string base = "/tmp/foak_resume_test." + std::to_string(getpid()) + "." +
                           std::to_string(counter++);
  const std::string cmd = env + std::string(FOAK_WORKER_BIN) + " " + args + " >/dev/null 2>" +
                          base + ".err";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = ReadFileToString(base + ".err").value_or("");
  std::remove((base + ".err").c_str());
  return r;
}

class ResumeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("resume_test");
    const RunResult init = Worker("init-model --config " + std::string(FOAK_SOURCE_DIR) +
                                  "/examples/debug_model/config.json --out " + Model());
    ASSERT_EQ(init.exit_code, 0) << init.err;
    std::string text;
    const std::vector<std::string> lines = {
        "The cat sat on the mat.", "A train left the station at noon.",
        "Bread rises in a warm kitchen.", "The tide came in over the sand.",
        "Snow fell on the mountain path.", "The library opened at nine.",
        "Rain on the roof all night long."};
    for (int i = 0; i < 3; ++i) {
      for (const std::string& l : lines) text += "{\"text\": \"" + l + "\"}\n";
    }
    ASSERT_TRUE(WriteFileAtomically(Data(), text).ok());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Model() { return dir_->path() + "/model"; }
  static std::string Data() { return dir_->path() + "/train.jsonl"; }

  // A job in `dir` writing to dir/out; 7 examples x 3 with batch 2 packed at 48
  // tokens: an epoch is a few steps, so 12 steps cross epoch boundaries.
  std::string WriteJob(const std::string& dir, const std::string& precision, int max_steps,
                       int save_steps, const std::string& extra_hp = "",
                       const std::string& extra = "") {
    const std::string job = R"({"model": ")" + Model() + R"(", "dataset": {"train": ")" +
                            Data() + R"("}, "output_dir": ")" + dir + R"(/out", "device": "cpu",
        "hyperparameters": {"learning_rate": 0.003, "max_steps": )" +
                            std::to_string(max_steps) + R"(, "batch_size": 2,
        "gradient_accumulation_steps": 2, "max_seq_len": 48, "warmup_steps": 2,
        "weight_decay": 0.01, "precision": ")" + precision + R"(", "save_steps": )" +
                            std::to_string(save_steps) + extra_hp + "}" + extra + "}";
    const std::string path = dir + "/job.json";
    EXPECT_TRUE(WriteFileAtomically(path, job).ok());
    return path;
  }

  static testing::TempDir* dir_;
};
testing::TempDir* ResumeTest::dir_ = nullptr;

// step -> the metrics line's fields that must be reproduced exactly; the
// evaluation lines' (eval_loss, eval_tokens) go to `evals` when given.
std::map<int64_t, std::string> DeterministicMetrics(const std::string& path, int* lines,
                                                    std::map<int64_t, std::string>* evals = nullptr) {
  std::map<int64_t, std::string> out;
  *lines = 0;
  const std::string text = ReadFileToString(path).value_or("");
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string line = text.substr(pos, end - pos);
    pos = end == std::string::npos ? text.size() : end + 1;
    const auto j = nlohmann::json::parse(line);
    if (j.contains("eval_loss")) {
      if (evals != nullptr) {
        (*evals)[j.at("step").get<int64_t>()] =
            j.at("eval_loss").dump() + " " + j.at("eval_tokens").dump();
      }
      continue;
    }
    ++*lines;
    out[j.at("step").get<int64_t>()] = j.at("loss").dump() + " " + j.at("grad_norm").dump() +
                                       " " + j.at("learning_rate").dump() + " " +
                                       j.at("tokens").dump();
  }
  return out;
}

class ExactResume : public ResumeTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(ExactResume, StoppedAfterCheckpoint8AndResumedMatchesUninterruptedRun) {
  testing::TempDir full("resume_test"), stopped("resume_test");
  const RunResult a = Worker("train --job " + WriteJob(full.path(), GetParam(), 12, 4));
  ASSERT_EQ(a.exit_code, 0) << a.err;

  const std::string job = WriteJob(stopped.path(), GetParam(), 12, 4);
  const RunResult b = Worker("train --job " + job, "FOAK_TEST_EXIT_AFTER_CHECKPOINT=8 ");
  ASSERT_EQ(b.exit_code, 137) << b.err;
  EXPECT_TRUE(PathExists(stopped.path() + "/out/checkpoint-8/trainer_state.json"));
  EXPECT_FALSE(PathExists(stopped.path() + "/out/checkpoint-12"));
  EXPECT_FALSE(PathExists(stopped.path() + "/out/final"));

  const RunResult c = Worker("train --job " + job + " --resume latest");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.err.find("resuming from " + stopped.path() + "/out/checkpoint-8 (step 8"),
            std::string::npos)
      << c.err;

  int lines_a = 0, lines_c = 0;
  const auto ma = DeterministicMetrics(full.path() + "/out/metrics.jsonl", &lines_a);
  const auto mc = DeterministicMetrics(stopped.path() + "/out/metrics.jsonl", &lines_c);
  EXPECT_EQ(lines_a, 12);
  EXPECT_EQ(lines_c, 12) << "no step logged twice";
  ASSERT_EQ(ma.size(), 12u);
  for (int64_t step = 1; step <= 12; ++step) {
    ASSERT_TRUE(mc.count(step)) << "step " << step;
    EXPECT_EQ(ma.at(step), mc.at(step)) << "step " << step << " (loss grad_norm lr tokens)";
  }
  for (const char* file : {"final/model.safetensors", "checkpoint-12/model.safetensors",
                           "checkpoint-12/optimizer.safetensors"}) {
    auto x = ReadFileToString(full.path() + "/out/" + file);
    auto y = ReadFileToString(stopped.path() + "/out/" + file);
    ASSERT_TRUE(x.ok() && y.ok()) << file;
    EXPECT_TRUE(*x == *y) << file << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, ExactResume, ::testing::Values("fp32", "bf16-mixed"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "fp32" ? std::string("Fp32")
                                                       : std::string("Bf16Mixed");
                         });

TEST_F(ResumeTest, LoraWithValidationStoppedAndResumedMatchesUninterruptedRun) {
  testing::TempDir full("resume_test"), stopped("resume_test");
  const std::string lora = R"(, "method": "lora",
      "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj", "down_proj"]})";
  const std::string eval_hp = R"(, "eval_steps": 4, "learning_rate": 0.01)";
  auto job_in = [&](const std::string& dir) {
    std::string path = WriteJob(dir, "bf16-mixed", 12, 4, eval_hp, lora);
    // A quarter of the lines held out for validation.
    std::string text = *ReadFileToString(path);
    const std::string train = R"("train": ")" + Data() + R"(")";
    text.replace(text.find(train), train.size(), train + R"(, "validation_split": 0.25)");
    EXPECT_TRUE(WriteFileAtomically(path, text).ok());
    return path;
  };
  const RunResult a = Worker("train --job " + job_in(full.path()));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const std::string job = job_in(stopped.path());
  const RunResult b = Worker("train --job " + job, "FOAK_TEST_EXIT_AFTER_CHECKPOINT=8 ");
  ASSERT_EQ(b.exit_code, 137) << b.err;
  const std::string ckpt = stopped.path() + "/out/checkpoint-8";
  EXPECT_TRUE(PathExists(ckpt + "/adapter_model.safetensors"));
  EXPECT_TRUE(PathExists(ckpt + "/adapter_config.json"));
  EXPECT_FALSE(PathExists(ckpt + "/model.safetensors")) << "a LoRA checkpoint holds no base";
  const RunResult c = Worker("train --job " + job + " --resume latest");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.err.find("resuming from " + ckpt + " (step 8"), std::string::npos) << c.err;

  int lines_a = 0, lines_c = 0;
  std::map<int64_t, std::string> evals_a, evals_c;
  const auto ma = DeterministicMetrics(full.path() + "/out/metrics.jsonl", &lines_a, &evals_a);
  const auto mc = DeterministicMetrics(stopped.path() + "/out/metrics.jsonl", &lines_c, &evals_c);
  EXPECT_EQ(lines_a, 12);
  EXPECT_EQ(lines_c, 12);
  for (int64_t step = 1; step <= 12; ++step) {
    ASSERT_TRUE(ma.count(step) && mc.count(step)) << "step " << step;
    EXPECT_EQ(ma.at(step), mc.at(step)) << "step " << step << " (loss grad_norm lr tokens)";
  }
  ASSERT_EQ(evals_a.size(), 3u);  // steps 4, 8, 12
  EXPECT_EQ(evals_a, evals_c) << "eval_loss must not depend on the interruption";
  // Training changed the validation loss, so the comparison above has teeth.
  EXPECT_NE(evals_a.at(4), evals_a.at(12));
  for (const char* file : {"final/adapter_model.safetensors", "checkpoint-12/adapter_model.safetensors",
                           "checkpoint-12/optimizer.safetensors"}) {
    auto x = ReadFileToString(full.path() + "/out/" + file);
    auto y = ReadFileToString(stopped.path() + "/out/" + file);
    ASSERT_TRUE(x.ok() && y.ok()) << file;
    EXPECT_TRUE(*x == *y) << file << " differs";
  }
}

// QLoRA resumes exactly too: the checkpoint holds the adapter only, and the
// resumed run re-quantises the base to the same NF4 codes. Resuming with
// other quantization settings is refused naming the field.
TEST_F(ResumeTest, QloraStoppedAndResumedMatchesUninterruptedRun) {
  testing::TempDir full("resume_test"), stopped("resume_test");
  auto qlora = [](bool double_quant) {
    return std::string(R"(, "method": "qlora",
        "quantization": {"type": "nf4", "double_quant": )") +
           (double_quant ? "true" : "false") + R"(},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj", "down_proj"]})";
  };
  const std::string hp = R"(, "learning_rate": 0.01)";
  const RunResult a = Worker("train --job " + WriteJob(full.path(), "bf16-mixed", 12, 4, hp,
                                                         qlora(false)));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const std::string job = WriteJob(stopped.path(), "bf16-mixed", 12, 4, hp, qlora(false));
  const RunResult b = Worker("train --job " + job, "FOAK_TEST_EXIT_AFTER_CHECKPOINT=8 ");
  ASSERT_EQ(b.exit_code, 137) << b.err;
  const std::string ckpt = stopped.path() + "/out/checkpoint-8";
  EXPECT_TRUE(PathExists(ckpt + "/adapter_model.safetensors"));
  EXPECT_FALSE(PathExists(ckpt + "/model.safetensors")) << "a QLoRA checkpoint holds no base";
  const auto state = nlohmann::json::parse(*ReadFileToString(ckpt + "/trainer_state.json"));
  EXPECT_EQ(state["fingerprint"]["method"], "qlora");
  EXPECT_EQ(state["fingerprint"]["quantization"],
            nlohmann::json({{"type", "nf4"}, {"double_quant", false}}));

  // Other quantization settings are another run.
  const RunResult other = Worker(
      "train --job " + WriteJob(stopped.path(), "bf16-mixed", 12, 4, hp, qlora(true)) +
      " --resume latest");
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("quantization.double_quant: false -> true"), std::string::npos)
      << other.err;

  const RunResult c = Worker(
      "train --job " + WriteJob(stopped.path(), "bf16-mixed", 12, 4, hp, qlora(false)) +
      " --resume latest");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.err.find("resuming from " + ckpt + " (step 8"), std::string::npos) << c.err;
  int lines_a = 0, lines_c = 0;
  const auto ma = DeterministicMetrics(full.path() + "/out/metrics.jsonl", &lines_a);
  const auto mc = DeterministicMetrics(stopped.path() + "/out/metrics.jsonl", &lines_c);
  EXPECT_EQ(lines_a, 12);
  EXPECT_EQ(lines_c, 12);
  for (int64_t step = 1; step <= 12; ++step) {
    ASSERT_TRUE(ma.count(step) && mc.count(step)) << "step " << step;
    EXPECT_EQ(ma.at(step), mc.at(step)) << "step " << step << " (loss grad_norm lr tokens)";
  }
  for (const char* file : {"final/adapter_model.safetensors", "checkpoint-12/adapter_model.safetensors",
                           "checkpoint-12/optimizer.safetensors"}) {
    auto x = ReadFileToString(full.path() + "/out/" + file);
    auto y = ReadFileToString(stopped.path() + "/out/" + file);
    ASSERT_TRUE(x.ok() && y.ok()) << file;
    EXPECT_TRUE(*x == *y) << file << " differs";
  }
}

// Every folder named checkpoint-<step> must be whole.
void ExpectOnlyCompleteCheckpoints(const std::string& out) {
  auto names = ListDir(out);
  ASSERT_TRUE(names.ok());
  for (const std::string& name : *names) {
    if (name.rfind("checkpoint-", 0) != 0 || name.find(".tmp.") != std::string::npos) continue;
    const std::string dir = out + "/" + name;
    auto state = ReadFileToString(dir + "/trainer_state.json");
    ASSERT_TRUE(state.ok()) << dir << " has no trainer_state.json";
    const auto j = nlohmann::json::parse(*state);
    EXPECT_TRUE(j.at("complete").get<bool>());
    EXPECT_EQ("checkpoint-" + std::to_string(j.at("global_step").get<int64_t>()), name);
    EXPECT_TRUE(SafetensorsFile::Open(dir + "/optimizer.safetensors").ok()) << dir;
    EXPECT_TRUE(SafetensorsFile::Open(dir + "/model.safetensors").ok()) << dir;
  }
}

TEST_F(ResumeTest, RealSigkillLeavesNoHalfCheckpointAndResumeCompletes) {
  TempDir run;
  const std::string job = WriteJob(run.path(), "fp32", 30, 1, R"(, "save_total_limit": 3)");
  const std::string out = run.path() + "/out";
  for (int attempt = 0; attempt < 2; ++attempt) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      freopen("/dev/null", "w", stdout);
      freopen("/dev/null", "w", stderr);
      execl(FOAK_WORKER_BIN, FOAK_WORKER_BIN, "train", "--job", job.c_str(), "--resume",
            "latest", static_cast<char*>(nullptr));
      _exit(127);
    }
    // Kill while checkpoints are being written: after a few exist, at an
    // offset that differs per attempt.
    const std::string wait_for = out + "/checkpoint-" + std::to_string(3 + 10 * attempt);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!PathExists(wait_for) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(7 + 13 * attempt));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) break;  // finished before the kill: nothing more to interrupt
    EXPECT_TRUE(WIFSIGNALED(status));
    ExpectOnlyCompleteCheckpoints(out);
  }
  const RunResult r = Worker("train --job " + job + " --resume latest");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectOnlyCompleteCheckpoints(out);
  auto names = ListDir(out);
  ASSERT_TRUE(names.ok());
  int checkpoints = 0;
  for (const std::string& name : *names) {
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << "left over: " << name;
    checkpoints += name.rfind("checkpoint-", 0) == 0;
  }
  EXPECT_EQ(checkpoints, 3) << "save_total_limit";
  EXPECT_TRUE(PathExists(out + "/checkpoint-30"));
  int lines = 0;
  const auto metrics = DeterministicMetrics(out + "/metrics.jsonl", &lines);
  EXPECT_EQ(lines, 30);
  EXPECT_EQ(metrics.size(), 30u);
}

TEST_F(ResumeTest, RefusesChangedDatasetOrJobUnlessIgnored) {
  TempDir run;
  const RunResult first = Worker("train --job " + WriteJob(run.path(), "fp32", 4, 2),
                                 "FOAK_TEST_EXIT_AFTER_CHECKPOINT=2 ");
  ASSERT_EQ(first.exit_code, 137) << first.err;

  // A fresh start into the same folder would mix two runs.
  RunResult r = Worker("train --job " + WriteJob(run.path(), "fp32", 4, 2));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already holds checkpoints"), std::string::npos) << r.err;

  r = Worker("train --job " + WriteJob(run.path(), "fp32", 4, 2, R"(, "learning_rate": 0.01)") +
             " --resume latest");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("hyperparameters.learning_rate: 0.003 -> 0.01"), std::string::npos)
      << r.err;

  TempDir other_data;
  const std::string data = other_data.path() + "/train.jsonl";
  ASSERT_TRUE(WriteFileAtomically(data, *ReadFileToString(Data()) + "{\"text\": \"new\"}\n").ok());
  std::string job_text = *ReadFileToString(WriteJob(run.path(), "fp32", 4, 2));
  job_text.replace(job_text.find(Data()), Data().size(), data);
  ASSERT_TRUE(WriteFileAtomically(run.path() + "/job.json", job_text).ok());
  r = Worker("train --job " + run.path() + "/job.json --resume latest");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("dataset.train contents"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("resume_ignore_mismatch"), std::string::npos) << r.err;

  // Changing only logging/saving is fine, and so is any change when forced.
  r = Worker("train --job " +
             WriteJob(run.path(), "fp32", 4, 2, R"(, "learning_rate": 0.01, "logging_steps": 2)",
                      R"(, "resume_from_checkpoint": "latest", "resume_ignore_mismatch": true)"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(PathExists(run.path() + "/out/final/model.safetensors"));
}

TEST_F(ResumeTest, HalfWrittenCheckpointsAreNeverPicked) {
  TempDir run;
  const std::string job = WriteJob(run.path(), "fp32", 6, 2);
  const RunResult first = Worker("train --job " + job, "FOAK_TEST_EXIT_AFTER_CHECKPOINT=2 ");
  ASSERT_EQ(first.exit_code, 137) << first.err;
  const std::string out = run.path() + "/out";
  // A writer's temp of a later step, and a later folder missing its trainer state.
  for (const std::string& dir : {out + "/checkpoint-4.tmp.4242", out + "/checkpoint-6"}) {
    ASSERT_TRUE(MakeDirs(dir).ok());
    for (const char* file : {"config.json", "model.safetensors", "optimizer.safetensors"}) {
      ASSERT_TRUE(WriteFileAtomically(dir + "/" + file,
                                      *ReadFileToString(out + "/checkpoint-2/" + file))
                      .ok());
    }
  }
  ASSERT_TRUE(WriteFileAtomically(out + "/checkpoint-4.tmp.4242/trainer_state.json",
                                  *ReadFileToString(out + "/checkpoint-2/trainer_state.json"))
                  .ok());
  const RunResult r = Worker("train --job " + job + " --resume latest");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming from " + out + "/checkpoint-2 (step 2"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("removed the unfinished checkpoint " + out + "/checkpoint-4.tmp.4242"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(PathExists(out + "/checkpoint-4.tmp.4242"));
  // The run re-reached step 6 and replaced the incomplete folder with a whole one.
  EXPECT_TRUE(PathExists(out + "/checkpoint-6/trainer_state.json"));
}

}  // namespace
}  // namespace foak
