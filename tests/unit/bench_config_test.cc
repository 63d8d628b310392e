// Benchmark jobs without a device: the job file's "bench" object (defaults,
// errors that name the field), the max-batch search against scripted
// out-of-memory answers, the kernel-set labels and the bench.jsonl row format.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "nlohmann/json.hpp"
#include "worker/bench/max_batch_search.h"
#include "worker/train/bench_result.h"
#include "worker/train/job.h"

namespace foak {
namespace {

absl::StatusOr<JobConfig> Parse(const std::string& bench_and_more) {
  return ParseJobConfig(
      R"({"model": "/m", "output_dir": "/o", "hyperparameters": {"batch_size": 3, "max_seq_len": 64})" +
          bench_and_more + "}",
      "job.json");
}

TEST(BenchConfig, DefaultsComeFromTheHyperparameters) {
  absl::StatusOr<JobConfig> job = Parse(R"(, "bench": {})");
  ASSERT_TRUE(job.ok()) << job.status();
  const BenchConfig& b = job->bench;
  EXPECT_TRUE(b.enabled);
  EXPECT_EQ(b.kernel_set_names, (std::vector<std::string>{"none", "foak", "all"}));
  ASSERT_EQ(b.kernel_sets.size(), 3u);
  EXPECT_TRUE(b.kernel_sets[0].empty());
  EXPECT_EQ(KernelSetLabel(b.kernel_sets[1]), "foak");
  EXPECT_EQ(KernelSetLabel(b.kernel_sets[2]), "all");
  EXPECT_EQ(b.batch_sizes, (std::vector<int64_t>{3}));
  EXPECT_EQ(b.seq_lens, (std::vector<int64_t>{64}));
  EXPECT_EQ(b.warmup_steps, 3);
  EXPECT_EQ(b.steps, 10);
  EXPECT_FALSE(b.find_max_batch);
  EXPECT_EQ(b.PlannedRows(), 3);
  EXPECT_TRUE(job->dataset.train.empty());
}

TEST(BenchConfig, EveryFieldParses) {
  absl::StatusOr<JobConfig> job = Parse(
      R"(, "method": "lora", "bench": {"kernel_sets": ["none", "rms_norm, rope", "foak,fused_linear_cross_entropy"],
          "batch_sizes": [2, 8], "seq_lens": 512, "warmup_steps": 0, "steps": 4,
          "find_max_batch": true, "max_batch_limit": 64})");
  ASSERT_TRUE(job.ok()) << job.status();
  const BenchConfig& b = job->bench;
  EXPECT_EQ(KernelSetLabel(b.kernel_sets[1]), "rms_norm+rope");
  // "all" also has fused_lora.
  EXPECT_EQ(KernelSetLabel(b.kernel_sets[2]), "foak+fused_linear_cross_entropy");
  EXPECT_EQ(b.batch_sizes, (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(b.seq_lens, (std::vector<int64_t>{512}));
  EXPECT_EQ(b.warmup_steps, 0);
  EXPECT_EQ(b.steps, 4);
  EXPECT_TRUE(b.find_max_batch);
  EXPECT_EQ(b.max_batch_limit, 64);
  EXPECT_EQ(b.PlannedRows(), 1 * 2 * 3 + 1 * 3);
}

TEST(BenchConfig, ErrorsNameTheFieldAndWhatIsAllowed) {
  struct Case {
    std::string json;
    std::string want;
  };
  const std::vector<Case> cases = {
      {R"(, "bench": {}, "dataset": {"train": "d.jsonl"})", "dataset is given but this is a benchmark job"},
      {R"(, "bench": {"kernel_sets": ["foak", "fast"]})", "bench.kernel_sets entry 'fast'"},
      {R"(, "bench": {"kernel_sets": []})", "bench.kernel_sets = []; expected a non-empty list"},
      {R"(, "bench": {"kernel_sets": [""]})", "bench.kernel_sets has an empty entry"},
      {R"(, "bench": {"batch_sizes": [4, 0]})", "bench.batch_sizes = [4,0]; expected a non-empty list of integers >= 1"},
      {R"(, "bench": {"seq_lens": [1]})", "bench.seq_lens = [1]; expected a non-empty list of integers >= 2"},
      {R"(, "bench": {"steps": 0})", "bench.steps = 0; expected an integer >= 1"},
      {R"(, "bench": {"find_max_batch": "yes"})", "bench.find_max_batch = \"yes\"; expected true or false"},
      {R"(, "bench": {"stepz": 3})", "unknown key 'bench.stepz'"},
      {R"(, "bench": [1])", "bench = [1]; expected an object"},
      {R"(, "bench": {}, "resume_from_checkpoint": "/ckpt")", "resume_from_checkpoint is a checkpoint path"},
      {"", "dataset is required"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<JobConfig> job = Parse(c.json);
    ASSERT_FALSE(job.ok()) << c.json;
    EXPECT_NE(std::string(job.status().message()).find(c.want), std::string::npos)
        << c.json << "\n  got: " << job.status().message();
  }
}

// fits(b) = b <= max, with every trial recorded.
absl::StatusOr<MaxBatchSearch> Search(int64_t start, int64_t limit, int64_t max) {
  return FindMaxBatch(start, limit, [max](int64_t b) -> absl::StatusOr<bool> { return b <= max; });
}

TEST(MaxBatchSearch, DoublesThenBisectsToWithinAnEighth) {
  absl::StatusOr<MaxBatchSearch> s = Search(4, 1024, 37);
  ASSERT_TRUE(s.ok());
  EXPECT_LE(s->largest, 37);
  EXPECT_GT(s->largest, 37 - 37 / 8);
  // 4, 8, 16, 32 fit; 64 does not; then a few bisection steps.
  ASSERT_GE(s->trials.size(), 5u);
  EXPECT_EQ(s->trials[0], std::make_pair(int64_t{4}, true));
  EXPECT_EQ(s->trials[4], std::make_pair(int64_t{64}, false));
  EXPECT_LE(s->trials.size(), 9u);
  for (const auto& [b, fitted] : s->trials) EXPECT_EQ(fitted, b <= 37) << b;
}

TEST(MaxBatchSearch, StopsAtTheLimitAndSearchesDownwards) {
  absl::StatusOr<MaxBatchSearch> capped = Search(4, 20, 1000);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->largest, 20);
  EXPECT_EQ(capped->trials.back(), std::make_pair(int64_t{20}, true));

  absl::StatusOr<MaxBatchSearch> down = Search(64, 1024, 5);
  ASSERT_TRUE(down.ok());
  EXPECT_EQ(down->largest, 5);  // 64, 32, 16, 8 fail; 4 fits; 6 fails; 5 fits

  absl::StatusOr<MaxBatchSearch> none = Search(8, 1024, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->largest, 0);
  EXPECT_EQ(none->trials.back(), std::make_pair(int64_t{1}, false));
}

TEST(MaxBatchSearch, AnErrorEndsTheSearch) {
  absl::StatusOr<MaxBatchSearch> s =
      FindMaxBatch(2, 64, [](int64_t b) -> absl::StatusOr<bool> {
        if (b >= 8) return absl::InternalError("kernel failed");
        return true;
      });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), "kernel failed");
  EXPECT_FALSE(FindMaxBatch(1, 0, [](int64_t) -> absl::StatusOr<bool> { return true; }).ok());
}

TEST(BenchResult, JsonLineHasEveryFieldAndNullForAMissingChange) {
  BenchResult r;
  r.index = 2;
  r.total = 6;
  r.model = "llama-3.2-1b";
  r.method = "full";
  r.kernels = "all";
  r.batch = 4;
  r.seq = 2048;
  r.precision = "bf16";
  r.status = "ok";
  r.tokens_per_second = 65000.5;
  r.peak_allocated_bytes = int64_t{20} << 30;
  r.device = "cuda:0";
  nlohmann::json j = nlohmann::json::parse(BenchResultToJson(r));
  EXPECT_EQ(j.size(), 24u);
  EXPECT_EQ(j["framework"], "foak");
  EXPECT_EQ(j["kernels"], "all");
  EXPECT_EQ(j["peak_allocated_bytes"].get<int64_t>(), int64_t{20} << 30);
  EXPECT_TRUE(j["pct_change"].is_null());
  r.pct_change = 30.25;
  j = nlohmann::json::parse(BenchResultToJson(r));
  EXPECT_DOUBLE_EQ(j["pct_change"].get<double>(), 30.25);
  EXPECT_EQ(BenchResultToJson(r).find('\n'), std::string::npos);
}

}  // namespace
}  // namespace foak
