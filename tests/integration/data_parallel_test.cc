// Data-parallel training end to end on the CPU: real foak-worker processes,
// one per rank, joined over Gloo through a TCPStore rendezvous from the
// torchrun variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
//   - 2 ranks x batch b give the same per-step losses, gradient norms, token
//     counts and final weights as 1 rank x batch 2b (full fine-tuning with
//     gradient accumulation, and LoRA with sharded validation), within fp32
//     summation-order tolerance; only rank 0 writes the output folder;
//   - a rank that never starts is named by the others' error within
//     ddp_timeout, instead of a hang;
//   - a rank killed mid-run makes the other fail within seconds (no hang),
//     and both, relaunched with --resume latest, finish with the same
//     metrics as an uninterrupted two-rank run;
//   - sharded optimizer state (zero_stage 1) trains as unsharded and resumes
//     from its own per-rank checkpoint slices;
//   - a benchmark job's rows count every rank's tokens.
// FOAK_DP_TEST_DEVICE=cuda runs the same on GPUs over NCCL (one rank per GPU;
// scripts/dp_gpu_check.sh does so on a host with two). There a lost rank is
// noticed by NCCL's watchdog at ddp_timeout rather than at once, so that test
// sets a short one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/net_util.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/worker_run.h"
#include "worker/model/safetensors.h"

namespace foak {
namespace {

using testing::TempDir;

// "cpu" (Gloo), or "cuda" from FOAK_DP_TEST_DEVICE (NCCL).
std::string Device() {
  const char* d = std::getenv("FOAK_DP_TEST_DEVICE");
  return d == nullptr || *d == '\0' ? "cpu" : d;
}

struct RankRun {
  int exit_code = -1;
  std::string err;
};

// Starts `world` worker processes with `args` at once (`ranks` of them, the
// ranks 0..ranks-1; fewer than world leaves the others missing) and waits
// for all. `env` is prepended to each command.
std::vector<RankRun> RunRanks(const std::string& args, int world, int ranks = -1,
                              const std::string& env = "") {
  if (ranks < 0) ranks = world;
  static int counter = 0;
  const std::string base = "/tmp/foak_dp_test." + std::to_string(getpid()) + "." +
                           std::to_string(counter++);
  const int port = FreeLoopbackPort();
  std::string script;
  for (int r = 0; r < ranks; ++r) {
    script += env + " RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) +
              " WORLD_SIZE=" + std::to_string(world) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
              std::to_string(port) + " " + FOAK_WORKER_BIN + " " + args + " >/dev/null 2>" +
              base + ".err" + std::to_string(r) + " & p" + std::to_string(r) + "=$!\n";
  }
  for (int r = 0; r < ranks; ++r) {
    script += "wait $p" + std::to_string(r) + "; echo $? >" + base + ".code" + std::to_string(r) +
              "\n";
  }
  EXPECT_TRUE(WriteFileAtomically(base + ".sh", script).ok());
  (void)std::system(("sh " + base + ".sh").c_str());
  std::vector<RankRun> out(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    const std::string code = ReadFileToString(base + ".code" + std::to_string(r)).value_or("-1");
    out[r].exit_code = std::atoi(code.c_str());
    out[r].err = ReadFileToString(base + ".err" + std::to_string(r)).value_or("");
    std::remove((base + ".code" + std::to_string(r)).c_str());
    std::remove((base + ".err" + std::to_string(r)).c_str());
  }
  std::remove((base + ".sh").c_str());
  return out;
}

// True when the ranks could not join because this build lacks the device's
// collectives backend (a LibTorch without Gloo's headers, as pip's; the GPU
// host runs these tests over NCCL instead).
bool NoBackend(const std::vector<RankRun>& runs) {
  for (const RankRun& r : runs) {
    if (r.err.find("is not in this build") != std::string::npos) return true;
  }
  return false;
}
#define SKIP_WITHOUT_BACKEND(runs) \
  if (NoBackend(runs)) GTEST_SKIP() << "no " << Device() << " collectives backend in this build"

struct StepLine {
  double loss = 0, grad_norm = 0, learning_rate = 0;
  int64_t tokens = 0;
};

std::map<int64_t, StepLine> Steps(const std::string& metrics, std::map<int64_t, double>* evals) {
  std::map<int64_t, StepLine> out;
  const std::string text = ReadFileToString(metrics).value_or("");
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const auto j = nlohmann::json::parse(std::string(line));
    const int64_t step = j.at("step").get<int64_t>();
    if (j.contains("eval_loss")) {
      if (evals != nullptr) (*evals)[step] = j.at("eval_loss").get<double>();
      continue;
    }
    out[step] = {j.at("loss").get<double>(), j.at("grad_norm").get<double>(),
                 j.at("learning_rate").get<double>(), j.at("tokens").get<int64_t>()};
  }
  return out;
}

double RelDiff(double a, double b) { return std::abs(a - b) / std::max(1e-12, std::abs(b)); }

class DataParallelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("dp_test");
    const std::string init = std::string(FOAK_WORKER_BIN) + " init-model --config " +
                             FOAK_SOURCE_DIR + "/examples/debug_model/config.json --out " +
                             Model();
    ASSERT_EQ(testing::RunCapture(init).exit_code, 0);
    std::string text;
    const std::vector<std::string> lines = {
        "The cat sat on the mat.", "A train left the station at noon.",
        "Bread rises in a warm kitchen.", "The tide came in over the sand.",
        "Snow fell on the mountain path.", "The library opened at nine.",
        "Rain on the roof all night long.", "Bees hum in the clover field."};
    for (int i = 0; i < 4; ++i) {
      for (const std::string& l : lines) text += "{\"text\": \"" + l + " " + std::to_string(i) + "\"}\n";
    }
    ASSERT_TRUE(WriteFileAtomically(Data(), text).ok());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Model() { return dir_->path() + "/model"; }
  static std::string Data() { return dir_->path() + "/train.jsonl"; }

  // A job writing to dir/out on the CPU in fp32: packed rows of 32 tokens.
  static std::string WriteJob(const std::string& dir, int batch_size, int accumulation,
                              int max_steps, const std::string& extra_hp = "",
                              const std::string& extra = "", const std::string& dataset_extra = "") {
    const std::string job = R"({"model": ")" + Model() + R"(", "dataset": {"train": ")" + Data() +
                            "\"" + dataset_extra + R"(}, "output_dir": ")" + dir +
                            R"(/out", "device": ")" + Device() + R"(", "hyperparameters": {"learning_rate": 0.003,
        "max_steps": )" + std::to_string(max_steps) + R"(, "batch_size": )" +
                            std::to_string(batch_size) + R"(, "gradient_accumulation_steps": )" +
                            std::to_string(accumulation) + R"(, "max_seq_len": 32,
        "warmup_steps": 2, "weight_decay": 0.01, "precision": "fp32", "ddp_timeout": 60)" +
                            extra_hp + "}" + extra + "}";
    const std::string path = dir + "/job.json";
    EXPECT_TRUE(WriteFileAtomically(path, job).ok());
    return path;
  }

  static TempDir* dir_;
};
TempDir* DataParallelTest::dir_ = nullptr;

// Starts `world` ranks in the background (as RunRanks) and returns their
// pids; each rank's stderr goes to `err_prefix`<rank>.
std::vector<pid_t> StartRanks(const std::string& job, int world, const std::string& err_prefix) {
  const int port = FreeLoopbackPort();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      freopen("/dev/null", "w", stdout);
      freopen((err_prefix + std::to_string(r)).c_str(), "w", stderr);
      execl(FOAK_WORKER_BIN, FOAK_WORKER_BIN, "train", "--job", job.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    pids.push_back(pid);
  }
  return pids;
}

// Compares two runs' metrics.jsonl step by step.
void ExpectSameSteps(const std::string& one, const std::string& two, int steps, double tol) {
  std::map<int64_t, double> evals_one, evals_two;
  const auto a = Steps(one, &evals_one);
  const auto b = Steps(two, &evals_two);
  ASSERT_EQ(a.size(), static_cast<size_t>(steps));
  ASSERT_EQ(b.size(), static_cast<size_t>(steps));
  for (int64_t s = 1; s <= steps; ++s) {
    EXPECT_LT(RelDiff(b.at(s).loss, a.at(s).loss), tol) << "step " << s << " loss " << b.at(s).loss
                                                         << " vs " << a.at(s).loss;
    EXPECT_LT(RelDiff(b.at(s).grad_norm, a.at(s).grad_norm), tol) << "step " << s;
    EXPECT_EQ(b.at(s).learning_rate, a.at(s).learning_rate) << "step " << s;
    EXPECT_EQ(b.at(s).tokens, a.at(s).tokens) << "step " << s << ": the job's tokens";
  }
  // Training moved the loss, so the comparison has teeth.
  EXPECT_GT(std::abs(a.at(1).loss - a.at(steps).loss), 1e-3);
  ASSERT_EQ(evals_one.size(), evals_two.size());
  for (const auto& [step, loss] : evals_one) {
    EXPECT_LT(RelDiff(evals_two.at(step), loss), tol) << "eval at step " << step;
  }
}

// Largest relative (L2) difference between the same-named fp32 tensors of
// two safetensors files.
double MaxWeightDiff(const std::string& a, const std::string& b) {
  auto fa = SafetensorsFile::Open(a);
  auto fb = SafetensorsFile::Open(b);
  EXPECT_TRUE(fa.ok() && fb.ok()) << a << " / " << b;
  if (!fa.ok() || !fb.ok()) return 1e9;
  double worst = 0;
  EXPECT_FALSE((*fa)->tensors().empty());
  for (const TensorInfo& ia : (*fa)->tensors()) {
    const TensorInfo* ib = (*fb)->Find(ia.name);
    EXPECT_TRUE(ib != nullptr && ia.dtype == DType::kF32 && ib->dtype == DType::kF32 &&
                ib->NumBytes() == ia.NumBytes())
        << ia.name;
    if (ib == nullptr || ib->NumBytes() != ia.NumBytes() || ia.dtype != DType::kF32) return 1e9;
    const float* x = static_cast<const float*>((*fa)->Data(ia));
    const float* y = static_cast<const float*>((*fb)->Data(*ib));
    double num = 0, den = 0;
    for (int64_t i = 0; i < ia.NumElements(); ++i) {
      num += (double{x[i]} - y[i]) * (double{x[i]} - y[i]);
      den += double{y[i]} * y[i];
    }
    worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
  }
  return worst;
}

TEST_F(DataParallelTest, TwoRanksMatchOneRankWithTwiceTheBatch) {
  TempDir one("dp_test"), two("dp_test");
  // One rank: micro-batches of 4 rows; two ranks: 2 rows each. Both
  // accumulate 2 micro-batches, so every step trains on the same 8 rows.
  const auto a = RunRanks("train --job " + WriteJob(one.path(), 4, 2, 6), 1);
  ASSERT_EQ(a[0].exit_code, 0) << a[0].err;
  const auto b = RunRanks("train --job " + WriteJob(two.path(), 2, 2, 6), 2);
  SKIP_WITHOUT_BACKEND(b);
  ASSERT_EQ(b[0].exit_code, 0) << b[0].err;
  ASSERT_EQ(b[1].exit_code, 0) << b[1].err;
  EXPECT_NE(b[1].err.find("joined as rank 1 of 2"), std::string::npos) << b[1].err;
  ExpectSameSteps(one.path() + "/out/metrics.jsonl", two.path() + "/out/metrics.jsonl", 6, 1e-5);
  EXPECT_LT(MaxWeightDiff(one.path() + "/out/final/model.safetensors",
                          two.path() + "/out/final/model.safetensors"),
            1e-5);
}

TEST_F(DataParallelTest, ActivationCheckpointingAndFusedKernelsKeepTheEquivalence) {
  // Recomputed layers reach their gradient accumulators inside a nested
  // backward; the fused ops return their own gradients. Both must still count
  // every parameter ready exactly once.
  TempDir one("dp_test"), two("dp_test");
  const std::string hp = R"(, "gradient_checkpointing": true)";
  const std::string kernels = R"(, "kernels": ["all"])";
  const auto a = RunRanks("train --job " + WriteJob(one.path(), 4, 1, 4, hp, kernels), 1);
  ASSERT_EQ(a[0].exit_code, 0) << a[0].err;
  const auto b = RunRanks("train --job " + WriteJob(two.path(), 2, 1, 4, hp, kernels), 2);
  SKIP_WITHOUT_BACKEND(b);
  ASSERT_EQ(b[0].exit_code, 0) << b[0].err;
  ASSERT_EQ(b[1].exit_code, 0) << b[1].err;
  ExpectSameSteps(one.path() + "/out/metrics.jsonl", two.path() + "/out/metrics.jsonl", 4, 1e-5);
}

TEST_F(DataParallelTest, LoraWithShardedValidationMatchesOneRank) {
  TempDir one("dp_test"), two("dp_test");
  const std::string lora = R"(, "method": "lora",
      "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]})";
  const std::string hp = R"(, "eval_steps": 2, "learning_rate": 0.01)";
  const std::string split = R"(, "validation_split": 0.25)";
  const auto a = RunRanks("train --job " + WriteJob(one.path(), 4, 1, 4, hp, lora, split), 1);
  ASSERT_EQ(a[0].exit_code, 0) << a[0].err;
  const auto b = RunRanks("train --job " + WriteJob(two.path(), 2, 1, 4, hp, lora, split), 2);
  SKIP_WITHOUT_BACKEND(b);
  ASSERT_EQ(b[0].exit_code, 0) << b[0].err;
  ASSERT_EQ(b[1].exit_code, 0) << b[1].err;
  ExpectSameSteps(one.path() + "/out/metrics.jsonl", two.path() + "/out/metrics.jsonl", 4, 1e-5);
  EXPECT_LT(MaxWeightDiff(one.path() + "/out/final/adapter_model.safetensors",
                          two.path() + "/out/final/adapter_model.safetensors"),
            1e-5);
  // The adapters' optimizer state sharded over the two ranks: the same run.
  TempDir sharded("dp_test");
  const std::string zero_hp = hp + R"(, "zero_stage": 1)";
  const auto z = RunRanks("train --job " + WriteJob(sharded.path(), 2, 1, 4, zero_hp, lora, split), 2);
  ASSERT_EQ(z[0].exit_code, 0) << z[0].err;
  ASSERT_EQ(z[1].exit_code, 0) << z[1].err;
  ExpectSameSteps(two.path() + "/out/metrics.jsonl", sharded.path() + "/out/metrics.jsonl", 4,
                  1e-6);
  EXPECT_LT(MaxWeightDiff(two.path() + "/out/final/adapter_model.safetensors",
                          sharded.path() + "/out/final/adapter_model.safetensors"),
            1e-6);
}

TEST_F(DataParallelTest, ARankThatNeverStartsIsNamed) {
  TempDir run("dp_test");
  const auto start = std::chrono::steady_clock::now();
  const auto r = RunRanks("train --job " + WriteJob(run.path(), 2, 1, 4, R"(, "ddp_timeout": 3)"),
                          3, /*ranks=*/2);
  SKIP_WITHOUT_BACKEND(r);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const RankRun& rank : r) {
    EXPECT_NE(rank.exit_code, 0);
    EXPECT_NE(rank.err.find("rank 2 of 3 did not arrive within 3 s"), std::string::npos)
        << rank.err;
  }
  EXPECT_LT(seconds, 30) << "the timeout bounds the wait";
  EXPECT_FALSE(PathExists(run.path() + "/out/metrics.jsonl")) << "nothing is written";
}

TEST_F(DataParallelTest, RankSigkilledMidStepEndsTheOtherWithinTheTimeout) {
  TempDir run("dp_test");
  // Long enough that the kill lands inside training, wherever in a step.
  const std::string job = WriteJob(run.path(), 2, 2, 100000, R"(, "ddp_timeout": 20)");
  const std::vector<pid_t> pids = StartRanks(job, 2, run.path() + "/err");
  // Wait until rank 0 has logged a few steps, then kill rank 1 outright.
  const std::string metrics = run.path() + "/out/metrics.jsonl";
  for (int i = 0; i < 600; ++i) {
    auto text = ReadFileToString(metrics);
    if (text.ok() && std::count(text->begin(), text->end(), '\n') >= 3) break;
    if (ReadFileToString(run.path() + "/err0").value_or("").find("is not in this build") !=
        std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (ReadFileToString(run.path() + "/err0").value_or("").find("is not in this build") !=
      std::string::npos) {
    for (pid_t pid : pids) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    GTEST_SKIP() << "no " << Device() << " collectives backend in this build";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(37));  // somewhere inside a step
  ASSERT_EQ(::kill(pids[1], SIGKILL), 0);
  const auto killed_at = std::chrono::steady_clock::now();
  int status1 = 0, status0 = 0;
  ::waitpid(pids[1], &status1, 0);
  EXPECT_TRUE(WIFSIGNALED(status1) && WTERMSIG(status1) == SIGKILL);
  // Rank 0 must end by itself, with an error, not hang.
  bool ended = false;
  for (int i = 0; i < 900 && !ended; ++i) {
    ended = ::waitpid(pids[0], &status0, WNOHANG) == pids[0];
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!ended) {
    ::kill(pids[0], SIGKILL);
    ::waitpid(pids[0], &status0, 0);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_TRUE(ended) << "rank 0 still running " << seconds << " s after rank 1 died";
  EXPECT_FALSE(WIFEXITED(status0) && WEXITSTATUS(status0) == 0) << "rank 0 cannot succeed alone";
  const std::string err = ReadFileToString(run.path() + "/err0").value_or("");
  if (WIFEXITED(status0)) {
    EXPECT_NE(err.find("step "), std::string::npos) << "the error names the step: " << err;
  }
}

TEST_F(DataParallelTest, KilledRankFailsTheOtherAndBothResume) {
  TempDir full("dp_test"), killed("dp_test");
  // Gloo notices the lost peer at once; NCCL only at the watchdog's timeout.
  const std::string save = R"(, "save_steps": 2, "ddp_timeout": 20)";
  const auto a = RunRanks("train --job " + WriteJob(full.path(), 2, 1, 6, save), 2);
  SKIP_WITHOUT_BACKEND(a);
  ASSERT_EQ(a[0].exit_code, 0) << a[0].err;
  ASSERT_EQ(a[1].exit_code, 0) << a[1].err;

  const std::string job = WriteJob(killed.path(), 2, 1, 6, save);
  const auto start = std::chrono::steady_clock::now();
  // Rank 1 dies after step 3; rank 0 then waits on it in step 4's collectives.
  const auto b = RunRanks("train --job " + job, 2, -1,
                          "FOAK_TEST_EXIT_AFTER_CHECKPOINT=3 FOAK_TEST_EXIT_RANK=1");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(b[1].exit_code, 137) << b[1].err;
  EXPECT_NE(b[0].exit_code, 0) << "rank 0 must fail, not hang or succeed";
  EXPECT_LT(seconds, 45) << "a lost peer must not leave the survivor hanging";
  EXPECT_TRUE(PathExists(killed.path() + "/out/checkpoint-2/trainer_state.json"));
  EXPECT_FALSE(PathExists(killed.path() + "/out/final"));

  const auto c = RunRanks("train --job " + job + " --resume latest", 2);
  ASSERT_EQ(c[0].exit_code, 0) << c[0].err;
  ASSERT_EQ(c[1].exit_code, 0) << c[1].err;
  EXPECT_NE(c[0].err.find("resuming from " + killed.path() + "/out/checkpoint-2"),
            std::string::npos)
      << c[0].err;
  ExpectSameSteps(full.path() + "/out/metrics.jsonl", killed.path() + "/out/metrics.jsonl", 6,
                  1e-12);
}

class ShardedState : public DataParallelTest, public ::testing::WithParamInterface<std::string> {
 protected:
  // A job of GetParam()'s precision with zero_stage `zero`, 1 MiB buckets cut small
  // enough that the debug model spreads over several of them.
  std::string Job(const std::string& dir, int zero, const std::string& extra_hp = "") {
    std::string path = WriteJob(dir, 2, 1, 6,
                                R"(, "zero_stage": )" + std::to_string(zero) +
                                    R"(, "ddp_bucket_cap_mb": 1)" + extra_hp);
    std::string text = *ReadFileToString(path);
    text.replace(text.find(R"("precision": "fp32")"), 19, R"("precision": ")" + GetParam() + "\"");
    EXPECT_TRUE(WriteFileAtomically(path, text).ok());
    return path;
  }
};

TEST_P(ShardedState, MatchesUnshardedAndResumesFromItsOwnCheckpoints) {
  TempDir plain("dp_test"), sharded("dp_test"), killed("dp_test");
  const std::string save = R"(, "save_steps": 2, "ddp_timeout": 20)";
  const auto a = RunRanks("train --job " + Job(plain.path(), 0, save), 2);
  SKIP_WITHOUT_BACKEND(a);
  ASSERT_EQ(a[0].exit_code, 0) << a[0].err;
  const auto b = RunRanks("train --job " + Job(sharded.path(), 1, save), 2);
  ASSERT_EQ(b[0].exit_code, 0) << b[0].err;
  ASSERT_EQ(b[1].exit_code, 0) << b[1].err;
  // fp32: the same up to summation order (the clipping norm adds per-slice
  // norms instead of per-tensor ones). bf16-mixed: besides, a last-bit
  // difference in a master weight can flip its bf16 rounding, which the next
  // forward then sees.
  const double tol = GetParam() == "fp32" ? 1e-5 : 1e-3;
  ExpectSameSteps(plain.path() + "/out/metrics.jsonl", sharded.path() + "/out/metrics.jsonl", 6,
                  tol);
  // final/ holds the whole model (bf16-mixed: the fp32 masters, gathered).
  EXPECT_LT(MaxWeightDiff(plain.path() + "/out/final/model.safetensors",
                          sharded.path() + "/out/final/model.safetensors"),
            tol);
  const std::string ckpt = sharded.path() + "/out/checkpoint-4/";
  EXPECT_TRUE(PathExists(ckpt + "optimizer.rank-0-of-2.safetensors"));
  EXPECT_TRUE(PathExists(ckpt + "optimizer.rank-1-of-2.safetensors"));
  EXPECT_FALSE(PathExists(ckpt + "optimizer.safetensors"));
  EXPECT_FALSE(PathExists(sharded.path() + "/out/checkpoint-4.tmp.shards"));

  // Rank 1 dies after step 3; both resume from checkpoint-2 and end as the
  // uninterrupted sharded run did, exactly.
  const std::string job = Job(killed.path(), 1, save);
  const auto k = RunRanks("train --job " + job, 2, -1,
                          "FOAK_TEST_EXIT_AFTER_CHECKPOINT=3 FOAK_TEST_EXIT_RANK=1");
  EXPECT_EQ(k[1].exit_code, 137);
  EXPECT_NE(k[0].exit_code, 0);
  const auto r = RunRanks("train --job " + job + " --resume latest", 2);
  ASSERT_EQ(r[0].exit_code, 0) << r[0].err;
  ASSERT_EQ(r[1].exit_code, 0) << r[1].err;
  ExpectSameSteps(sharded.path() + "/out/metrics.jsonl", killed.path() + "/out/metrics.jsonl", 6,
                  1e-12);

  // One rank cannot take up two ranks' slices: refused, saying why.
  TempDir one("dp_test");
  std::string single = *ReadFileToString(job);
  single.replace(single.find(killed.path() + "/out"), killed.path().size() + 4, one.path() + "/out");
  single.replace(single.find(R"("zero_stage": 1)"), 15, R"("zero_stage": 0)");
  single.pop_back();
  single += R"(, "resume_from_checkpoint": ")" + sharded.path() + R"(/out/checkpoint-4"})";
  ASSERT_TRUE(WriteFileAtomically(one.path() + "/job.json", single).ok());
  const auto s = RunRanks("train --job " + one.path() + "/job.json", 1);
  EXPECT_NE(s[0].exit_code, 0);
  EXPECT_NE(s[0].err.find("holds state sharded over 2 ranks"), std::string::npos) << s[0].err;
}

INSTANTIATE_TEST_SUITE_P(Precisions, ShardedState, ::testing::Values("fp32", "bf16-mixed"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "fp32" ? std::string("Fp32")
                                                       : std::string("Bf16Mixed");
                         });

TEST_F(DataParallelTest, LaunchStartsOneNodesRanksAsTorchrunWould) {
  TempDir by_hand("dp_test"), launched("dp_test");
  const auto a = RunRanks("train --job " + WriteJob(by_hand.path(), 2, 1, 4), 2);
  SKIP_WITHOUT_BACKEND(a);
  ASSERT_EQ(a[0].exit_code, 0) << a[0].err;
  const auto b = testing::RunCapture(std::string(FOAK_WORKER_BIN) +
                                     " launch --nproc-per-node 2 -- train --job " +
                                     WriteJob(launched.path(), 2, 1, 4));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.err.find("foak-worker launch: node 0 of 1, 2 rank(s), rendezvous at 127.0.0.1:"),
            std::string::npos)
      << b.err;
  EXPECT_NE(b.err.find("joined as rank 1 of 2"), std::string::npos) << b.err;
  ExpectSameSteps(by_hand.path() + "/out/metrics.jsonl", launched.path() + "/out/metrics.jsonl", 4,
                  1e-12);
}

TEST_F(DataParallelTest, LaunchStopsTheGangAndPassesTheFailingRanksCodeOn) {
  TempDir run("dp_test");
  const auto start = std::chrono::steady_clock::now();
  const auto r = testing::RunCapture(
      "FOAK_TEST_EXIT_AFTER_CHECKPOINT=2 FOAK_TEST_EXIT_RANK=1 " + std::string(FOAK_WORKER_BIN) +
      " launch --nproc-per-node 2 -- train --job " +
      WriteJob(run.path(), 2, 1, 50, R"(, "ddp_timeout": 20)"));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (NoBackend({{r.exit_code, r.err}})) GTEST_SKIP() << "no collectives backend";
  EXPECT_EQ(r.exit_code, 137) << r.err;
  EXPECT_NE(r.err.find("foak-worker launch: rank 1 exited with 137; stopping the other ranks"),
            std::string::npos)
      << r.err;
  EXPECT_LT(seconds, 40);
  EXPECT_FALSE(PathExists(run.path() + "/out/final"));

  // Usage errors say what is missing.
  const auto bad = testing::RunCapture(std::string(FOAK_WORKER_BIN) +
                                       " launch --nnodes 2 -- train --job x.json");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--nnodes 2 needs --master-addr and --master-port"), std::string::npos)
      << bad.err;
  const auto none = testing::RunCapture(std::string(FOAK_WORKER_BIN) + " launch --nproc-per-node 2");
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("give the ranks' command after '--'"), std::string::npos) << none.err;
}

TEST_F(DataParallelTest, BenchmarkRowsOfTwoRanksCountBothRanksTokens) {
  TempDir run("dp_test");
  const std::string job = R"({"model": ")" + Model() + R"(", "output_dir": ")" + run.path() +
                          R"(/out", "device": ")" + Device() + R"(", "hyperparameters": {"precision": "fp32",
      "ddp_timeout": 60}, "bench": {"kernel_sets": ["none", "all"], "batch_sizes": [2],
      "seq_lens": [16], "warmup_steps": 1, "steps": 2}})";
  ASSERT_TRUE(WriteFileAtomically(run.path() + "/job.json", job).ok());
  const auto r = RunRanks("train --job " + run.path() + "/job.json", 2);
  SKIP_WITHOUT_BACKEND(r);
  ASSERT_EQ(r[0].exit_code, 0) << r[0].err;
  ASSERT_EQ(r[1].exit_code, 0) << r[1].err;
  const std::string text = ReadFileToString(run.path() + "/out/bench.jsonl").value_or("");
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << text;
  for (const std::string& line : lines) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("status"), "ok") << line;
    EXPECT_GT(j.at("tokens_per_second").get<double>(), 0);
    // tokens/s counts both ranks' batches: 2 x 2 x 16 tokens per step.
    EXPECT_NEAR(j.at("tokens_per_second").get<double>() * j.at("ms_per_step").get<double>() / 1e3,
                2.0 * 2 * 16, 1e-6 * 64)
        << line;
  }

  // The largest-batch search cannot run on several ranks: refused, by name.
  TempDir search("dp_test");
  std::string with_search = job;
  with_search.replace(with_search.find(run.path()), run.path().size(), search.path());
  with_search.replace(with_search.find(R"("steps": 2)"), 10, R"("steps": 2, "find_max_batch": true)");
  ASSERT_TRUE(WriteFileAtomically(search.path() + "/job.json", with_search).ok());
  const auto s = RunRanks("train --job " + search.path() + "/job.json", 2);
  EXPECT_NE(s[0].exit_code, 0);
  EXPECT_NE(s[0].err.find("bench.find_max_batch with 2 ranks"), std::string::npos) << s[0].err;
}

}  // namespace
}  // namespace foak
