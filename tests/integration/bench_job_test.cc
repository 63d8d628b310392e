// Benchmark jobs through foak-worker on the debug model (CPU): every row of
// the plan is measured and written to bench.jsonl in order, the first kernel
// set is the baseline of its shape, LoRA and activation checkpointing are
// honoured (qlora on an NF4 base made as random init draws it), and the
// max-batch search times the largest batch it finds (on the
// CPU nothing runs out of memory, so it reaches max_batch_limit). A bench job
// with a dataset is refused with a message naming it.
#include <cmath>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using testing::TempDir;

std::string Src(const std::string& rel) { return std::string(FOAK_SOURCE_DIR) + "/" + rel; }

Json BenchJob(const std::string& out, const Json& bench) {
  return Json{{"name", "bench"},
              {"model", Src("examples/debug_model")},
              {"output_dir", out},
              {"device", "cpu"},
              {"hyperparameters", {{"precision", "fp32"}, {"seed", 3}}},
              {"bench", bench}};
}

struct JobRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  std::vector<Json> rows;
};

JobRun RunJob(const TempDir& dir, const Json& job, const std::string& name) {
  const std::string path = dir.path() + "/" + name + ".json";
  EXPECT_TRUE(WriteFileAtomically(path, job.dump(2)).ok());
  testing::WorkerResult r = testing::RunWorkerCapture("train --job " + path);
  JobRun run;
  run.exit_code = r.exit_code;
  run.out = r.out;
  run.err = r.err;
  const std::string jsonl = job["output_dir"].get<std::string>() + "/bench.jsonl";
  if (PathExists(jsonl)) run.rows = testing::ReadMetrics(jsonl);
  return run;
}

TEST(BenchJob, MeasuresEveryRowInOrderAgainstTheFirstKernelSet) {
  TempDir dir("bench_job_test");
  const Json job = BenchJob(dir.path() + "/full",
                            {{"kernel_sets", {"none", "all"}},
                             {"batch_sizes", {2, 3}},
                             {"seq_lens", {16, 24}},
                             {"warmup_steps", 1},
                             {"steps", 2}});
  const JobRun run = RunJob(dir, job, "full");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_EQ(run.rows.size(), 8u) << run.out;
  const double ln_v = std::log(258.0);  // the debug model's vocabulary
  size_t i = 0;
  for (int64_t seq : {16, 24}) {
    for (int64_t batch : {2, 3}) {
      for (const std::string kernels : {"none", "all"}) {
        const Json& r = run.rows[i];
        SCOPED_TRACE(r.dump());
        EXPECT_EQ(r["index"], static_cast<int>(i));
        EXPECT_EQ(r["total"], 8);
        EXPECT_EQ(r["framework"], "foak");
        EXPECT_EQ(r["model"], "debug_model");
        EXPECT_EQ(r["method"], "full");
        EXPECT_EQ(r["kernels"], kernels);
        EXPECT_EQ(r["batch"], batch);
        EXPECT_EQ(r["seq"], seq);
        EXPECT_EQ(r["precision"], "fp32");
        EXPECT_EQ(r["status"], "ok");
        EXPECT_EQ(r["device"], "cpu");
        EXPECT_EQ(r["max_batch"], false);
        EXPECT_GT(r["tokens_per_second"].get<double>(), 0);
        EXPECT_GT(r["ms_per_step"].get<double>(), 0);
        EXPECT_GT(r["peak_allocated_bytes"].get<int64_t>(), 0);
        // Random tokens on a random model: about ln V.
        EXPECT_NEAR(r["loss_first"].get<double>(), ln_v, 0.5);
        EXPECT_TRUE(std::isfinite(r["loss_last"].get<double>()));
        if (kernels == "none") {
          EXPECT_TRUE(r["pct_change"].is_null());
        } else {
          const double base = run.rows[i - 1]["tokens_per_second"].get<double>();
          EXPECT_NEAR(r["pct_change"].get<double>(),
                      100.0 * (r["tokens_per_second"].get<double>() / base - 1.0), 1e-6);
          // The same seed, data and numbers: the kernels' loss is the plain one's.
          EXPECT_NEAR(r["loss_first"].get<double>(), run.rows[i - 1]["loss_first"].get<double>(), 1e-4);
        }
        ++i;
      }
    }
  }
  // A readable line per row on stdout.
  EXPECT_NE(run.out.find("bench 8/8: debug_model full all 3x24: "), std::string::npos) << run.out;
}

TEST(BenchJob, LoraWithCheckpointingAndTheLargestBatch) {
  TempDir dir("bench_job_test");
  Json job = BenchJob(dir.path() + "/lora", {{"kernel_sets", {"foak"}},
                                             {"batch_sizes", {2}},
                                             {"seq_lens", {16}},
                                             {"warmup_steps", 0},
                                             {"steps", 1},
                                             {"find_max_batch", true},
                                             {"max_batch_limit", 5}});
  job["method"] = "lora";
  job["lora"] = {{"r", 4}, {"alpha", 8}};
  job["hyperparameters"]["gradient_checkpointing"] = true;
  const JobRun run = RunJob(dir, job, "lora");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_EQ(run.rows.size(), 2u) << run.out;
  EXPECT_EQ(run.rows[0]["method"], "lora");
  EXPECT_EQ(run.rows[0]["activation_checkpointing"], true);
  EXPECT_EQ(run.rows[0]["max_batch"], false);
  EXPECT_EQ(run.rows[0]["batch"], 2);
  const Json& max = run.rows[1];
  EXPECT_EQ(max["max_batch"], true);
  EXPECT_EQ(max["status"], "ok");
  EXPECT_EQ(max["batch"], 5);  // 2 and 4 fit, then the limit 5 fits
  EXPECT_GT(max["tokens_per_second"].get<double>(), 0);
  EXPECT_NE(run.err.find("foak 4x16: fits"), std::string::npos) << run.err;
}

// qlora: the projections go into NF4 as random init draws them. The same
// seed and tokens as a lora row, so the first loss differs only by what NF4
// does to the random base (at the debug model's init scale, little).
TEST(BenchJob, QloraRowsTrainOnAnNf4Base) {
  TempDir dir("bench_job_test");
  const Json bench = {{"kernel_sets", {"none"}}, {"batch_sizes", {2}}, {"seq_lens", {16}},
                      {"warmup_steps", 1},       {"steps", 2}};
  Json lora = BenchJob(dir.path() + "/lora", bench);
  lora["method"] = "lora";
  lora["lora"] = {{"r", 4}, {"alpha", 8}};
  Json qlora = lora;
  qlora["output_dir"] = dir.path() + "/qlora";
  qlora["method"] = "qlora";
  qlora["quantization"] = {{"type", "nf4"}, {"double_quant", true}};
  const JobRun a = RunJob(dir, lora, "lora");
  const JobRun b = RunJob(dir, qlora, "qlora");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  ASSERT_EQ(b.rows.size(), 1u) << b.out;
  const Json& r = b.rows[0];
  EXPECT_EQ(r["method"], "qlora");
  EXPECT_EQ(r["status"], "ok") << r.dump();
  EXPECT_GT(r["tokens_per_second"].get<double>(), 0);
  const double first = a.rows.at(0)["loss_first"].get<double>();
  EXPECT_NEAR(r["loss_first"].get<double>(), first, 1e-3 * first);
  EXPECT_NE(r["loss_first"].get<double>(), first) << "the base must really be NF4";
  EXPECT_NE(b.out.find("debug_model qlora none 2x16: "), std::string::npos) << b.out;
}

TEST(BenchJob, ADatasetIsRefused) {
  TempDir dir("bench_job_test");
  Json job = BenchJob(dir.path() + "/bad", Json::object());
  job["dataset"] = {{"train", Src("examples/data/arith_train.jsonl")}};
  const JobRun run = RunJob(dir, job, "bad");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("dataset is given but this is a benchmark job"), std::string::npos)
      << run.err;
  EXPECT_TRUE(run.rows.empty());
}

}  // namespace
}  // namespace foak
