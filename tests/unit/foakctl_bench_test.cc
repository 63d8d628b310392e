// foakctl bench against the in-memory foakd: the benchmark spec it sends
// (flags, -f, defaults), the results table, markdown and JSON lines (the
// same as the worker's bench.jsonl) from a scripted stream of rows, the
// running commentary on stderr, exit codes by final state and for usage
// errors; and benchmark rows in watch, list and get.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/bench_format.h"
#include "client/job_view.h"
#include "client/testing/fake_foakd.h"
#include "client/testing/run_foakctl.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/worker_run.h"
#include "worker/train/bench_result.h"

namespace foak::client {
namespace {

using foak::v1::BenchResult;
using foak::v1::Job;
using foak::v1::JobEvent;
using testing::BenchEvent;
using testing::FakeFoakd;
using testing::FastTestOptions;
using testing::FoakctlResult;
using testing::RunFoakctl;
using testing::StateEvent;
using ::testing::HasSubstr;

// The id the fake gives the first job created.
constexpr char kFirstJob[] = "job-0000000000000001";

int64_t GiB(double gib) { return static_cast<int64_t>(gib * (int64_t{1} << 30)); }

BenchResult Row(int32_t index, const std::string& kernels, double tokens_per_second,
                int64_t peak_bytes) {
  BenchResult r;
  r.set_index(index);
  r.set_total(4);
  r.set_framework("foak");
  r.set_model("llama-3.2-1b");
  r.set_method("full");
  r.set_kernels(kernels);
  r.set_gpus(1);
  r.set_batch(4);
  r.set_seq(2048);
  r.set_precision("bf16");
  r.set_status("ok");
  r.set_tokens_per_second(tokens_per_second);
  r.set_ms_per_step(tokens_per_second > 0 ? 4.0 * 2048 * 1000 / tokens_per_second : 0);
  r.set_peak_allocated_bytes(peak_bytes);
  r.set_peak_reserved_bytes(peak_bytes + GiB(1));
  r.set_loss_first(11.93);
  r.set_loss_last(11.91);
  r.set_warmup_steps(3);
  r.set_steps(10);
  r.set_device("cuda:0");
  return r;
}

// The four rows of the script: the baseline, a faster kernel set, one that
// ran out of memory, and a max-batch row.
std::vector<BenchResult> ScriptRows() {
  BenchResult none = Row(0, "none", 50321.4, GiB(22.1));
  BenchResult foak = Row(1, "foak", 67890.2, GiB(11.05));
  foak.set_pct_change(34.91);
  BenchResult all = Row(2, "all", 0, GiB(140));
  all.set_status("out_of_memory");
  all.set_error("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail");
  BenchResult max = Row(3, "foak", 70123.6, GiB(130.5));
  max.set_batch(24);
  max.set_max_batch(true);
  max.set_pct_change(39.36);
  return {none, foak, all, max};
}

class BenchTest : public ::testing::Test {
 protected:
  FoakctlResult Run(std::vector<std::string> args) {
    args.push_back("--server");
    args.push_back(server_.address());
    return RunFoakctl(args, options_);
  }

  // The history of the job `bench` creates: states, the rows, the final state.
  void Script(Job::State final_state, int64_t break_after_seq = 0) {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    std::vector<JobEvent>& events = server_.jobs.events;
    events = {StateEvent(kFirstJob, 1, Job::QUEUED, "Created", ""),
              StateEvent(kFirstJob, 2, Job::RUNNING, "Running", "training on cuda:0")};
    for (const BenchResult& row : ScriptRows()) {
      events.push_back(BenchEvent(kFirstJob, static_cast<int64_t>(events.size()) + 1, row));
    }
    events.push_back(StateEvent(kFirstJob, 7, final_state,
                                final_state == Job::SUCCEEDED ? "Completed" : "Stopped", "bye"));
    server_.jobs.break_after_seq = break_after_seq;
  }

  foak::v1::JobSpec OnlySpec() {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    EXPECT_EQ(server_.jobs.create_requests.size(), 1u);
    return server_.jobs.create_requests.empty() ? foak::v1::JobSpec()
                                                : server_.jobs.create_requests[0].spec();
  }

  FakeFoakd server_;
  FoakctlOptions options_ = FastTestOptions();
};

constexpr char kTable[] =
    "model          method   kernels   GPUs   batch      seq    tokens/s        % change   peak GiB\n"
    "llama-3.2-1b   full     none      1      4          2048   50,321          -          22.10\n"
    "llama-3.2-1b   full     foak      1      4          2048   67,890          +34.9%     11.05\n"
    "llama-3.2-1b   full     all       1      4          2048   out of memory   -          -\n"
    "llama-3.2-1b   full     foak      1      24 (max)   2048   70,124          +39.4%     130.50\n";

TEST_F(BenchTest, FlagsBecomeTheBenchmarkSpec) {
  Script(Job::SUCCEEDED);
  const FoakctlResult r =
      Run({"bench", "--model", "models/llama", "--method", "lora", "--lora-r", "16",
           "--lora-alpha", "32", "--lora-dropout", "0.05", "--lora-target-modules", "q_proj,v_proj",
           "--kernels", "none", "--kernels", "rms_norm,rope", "--batch", "4,16", "--seq",
           "512,2048", "--steps", "5", "--warmup", "1", "--find-max-batch", "--max-batch-limit",
           "64", "--precision", "bf16-mixed", "--activation-checkpointing", "--gpus", "2",
           "--name", "b1", "--priority", "3", "--label", "team=kernels"});
  ASSERT_EQ(r.code, 0) << r.err;
  const foak::v1::JobSpec spec = OnlySpec();
  EXPECT_EQ(spec.model(), std::string(testing::kTestCwd) + "/models/llama");
  EXPECT_EQ(spec.name(), "b1");
  EXPECT_EQ(spec.method(), "lora");
  EXPECT_EQ(spec.lora().r(), 16);
  EXPECT_EQ(spec.lora().alpha(), 32);
  EXPECT_DOUBLE_EQ(spec.lora().dropout(), 0.05);
  ASSERT_EQ(spec.lora().target_modules().list_value().values_size(), 2);
  EXPECT_EQ(spec.lora().target_modules().list_value().values(1).string_value(), "v_proj");
  ASSERT_TRUE(spec.has_bench());
  const foak::v1::BenchSpec& b = spec.bench();
  EXPECT_THAT(b.kernel_sets(), ::testing::ElementsAre("none", "rms_norm,rope"));
  EXPECT_THAT(b.batch_sizes(), ::testing::ElementsAre(4, 16));
  EXPECT_THAT(b.seq_lens(), ::testing::ElementsAre(512, 2048));
  EXPECT_EQ(b.steps(), 5);
  EXPECT_EQ(b.warmup_steps(), 1);
  EXPECT_TRUE(b.find_max_batch());
  EXPECT_EQ(b.max_batch_limit(), 64);
  EXPECT_EQ(spec.hyperparameters().precision(), "bf16-mixed");
  EXPECT_TRUE(spec.hyperparameters().gradient_checkpointing());
  EXPECT_EQ(spec.resources().gpus(), 2);
  EXPECT_EQ(spec.priority(), 3);
  EXPECT_EQ(spec.labels().at("team"), "kernels");
  EXPECT_FALSE(spec.has_dataset());
  EXPECT_TRUE(spec.kernels().empty()) << "--kernels fills bench.kernel_sets only";
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  EXPECT_FALSE(server_.jobs.create_requests[0].request_id().empty());
}

TEST_F(BenchTest, DefaultsArePureBf16OnOneGpuAndTheWorkersOwn) {
  Script(Job::SUCCEEDED);
  const FoakctlResult r = Run({"bench", "--model", "/models/llama-3.2-1b/"});
  ASSERT_EQ(r.code, 0) << r.err;
  const foak::v1::JobSpec spec = OnlySpec();
  EXPECT_EQ(spec.name(), "bench-llama-3.2-1b");
  EXPECT_EQ(spec.method(), "full");
  EXPECT_EQ(spec.hyperparameters().precision(), "bf16");
  EXPECT_FALSE(spec.hyperparameters().has_gradient_checkpointing());
  EXPECT_EQ(spec.resources().gpus(), 1);
  // The bench object is there (it makes the job a benchmark) and leaves the
  // rest to the worker's defaults: none/foak/all, 3 + 10 steps, ...
  ASSERT_TRUE(spec.has_bench());
  EXPECT_EQ(spec.bench().ByteSizeLong(), 0u);
  EXPECT_FALSE(spec.has_lora());
  // A LoRA flag implies --method lora, as in submit.
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.create_requests.clear();
    server_.jobs.events.push_back(
        StateEvent("job-0000000000000002", 1, Job::SUCCEEDED, "Completed", ""));
  }
  ASSERT_EQ(Run({"bench", "--model", "/m", "--lora-r", "8"}).code, 0);
  EXPECT_EQ(OnlySpec().method(), "lora");
  // --double-quant implies qlora (an NF4 base made as random init draws it).
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.create_requests.clear();
    server_.jobs.events.push_back(
        StateEvent("job-0000000000000003", 1, Job::SUCCEEDED, "Completed", ""));
  }
  ASSERT_EQ(Run({"bench", "--model", "/m", "--double-quant", "false"}).code, 0);
  EXPECT_EQ(OnlySpec().method(), "qlora");
  EXPECT_FALSE(OnlySpec().quantization().double_quant());
}

TEST_F(BenchTest, AJobFileIsTheStartAndFlagsOverrideIt) {
  Script(Job::SUCCEEDED);
  foak::testing::TempDir dir("foakctl_bench");
  const std::string file = JoinPath(dir.path(), "bench.yaml");
  ASSERT_TRUE(WriteFileAtomically(file,
                                  "model: /models/tiny\n"
                                  "method: lora\n"
                                  "lora: {r: 4}\n"
                                  "hyperparameters: {precision: fp32}\n"
                                  "resources: {gpus: 0}\n"
                                  "bench: {kernel_sets: [none, all], seq_lens: [64]}\n")
                  .ok());
  const FoakctlResult r = Run({"bench", "-f", file, "--seq", "32,128", "--lora-alpha", "8"});
  ASSERT_EQ(r.code, 0) << r.err;
  const foak::v1::JobSpec spec = OnlySpec();
  EXPECT_EQ(spec.model(), "/models/tiny");
  EXPECT_EQ(spec.lora().r(), 4);
  EXPECT_EQ(spec.lora().alpha(), 8);
  EXPECT_EQ(spec.hyperparameters().precision(), "fp32") << "the file's, not bench's default";
  EXPECT_EQ(spec.resources().gpus(), 0) << "the file's: a CPU job";
  EXPECT_THAT(spec.bench().kernel_sets(), ::testing::ElementsAre("none", "all"));
  EXPECT_THAT(spec.bench().seq_lens(), ::testing::ElementsAre(32, 128));

  // A file with a dataset is refused here, before foakd sees it.
  const std::string with_data = JoinPath(dir.path(), "train.yaml");
  ASSERT_TRUE(WriteFileAtomically(with_data, "model: /m\ndataset: {train: /d.jsonl}\n").ok());
  const FoakctlResult bad = Run({"bench", "-f", with_data});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, HasSubstr("dataset is set, but a benchmark job trains on random tokens"));
}

TEST_F(BenchTest, PrintsTheRowsAsTheyComeAndTheTableAtTheEnd) {
  Script(Job::SUCCEEDED);
  const FoakctlResult r = Run({"bench", "--model", "/m"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, kTable);
  EXPECT_THAT(r.err, HasSubstr("benchmark job job-0000000000000001 submitted"));
  EXPECT_THAT(r.err, HasSubstr(
      "22:13:21  QUEUED  Created\n"
      "22:13:22  RUNNING  Running: training on cuda:0\n"
      "22:13:23  bench 1/4  none  4 x 2048  50,321 tok/s  peak 22.10 GiB\n"
      "22:13:24  bench 2/4  foak  4 x 2048  67,890 tok/s  +34.9%  peak 11.05 GiB\n"
      "22:13:25  bench 3/4  all  4 x 2048  out of memory: CUDA out of memory. Tried to allocate "
      "2.00 GiB\n"
      "22:13:26  bench 4/4  foak  24 (max) x 2048  70,124 tok/s  +39.4%  peak 130.50 GiB\n"
      "22:13:27  SUCCEEDED  Completed: bye\n"));
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.watch_requests.size(), 1u);
  const auto& kinds = server_.jobs.watch_requests[0].kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "bench"), kinds.end());
}

TEST_F(BenchTest, MarkdownTable) {
  Script(Job::SUCCEEDED);
  const FoakctlResult r = Run({"bench", "--model", "/m", "-o", "markdown"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "| model | method | kernels | GPUs | batch | seq | tokens/s | % change | peak GiB |\n"
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            "| llama-3.2-1b | full | none | 1 | 4 | 2048 | 50,321 |  | 22.10 |\n"
            "| llama-3.2-1b | full | foak | 1 | 4 | 2048 | 67,890 | +34.9% | 11.05 |\n"
            "| llama-3.2-1b | full | all | 1 | 4 | 2048 | out of memory |  |  |\n"
            "| llama-3.2-1b | full | foak | 1 | 24 (max) | 2048 | 70,124 | +39.4% | 130.50 |\n");
}

// -o json: stdout is exactly the worker's bench.jsonl for the same rows.
TEST_F(BenchTest, JsonLinesAreTheWorkersBenchJsonl) {
  Script(Job::SUCCEEDED);
  const FoakctlResult r = Run({"bench", "--model", "/m", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  const std::vector<BenchResult> rows = ScriptRows();
  ASSERT_EQ(lines.size(), rows.size()) << r.out;
  for (size_t i = 0; i < rows.size(); ++i) {
    const BenchResult& p = rows[i];
    foak::BenchResult w;  // the worker's struct, as the bench loop fills it
    w.index = p.index();
    w.total = p.total();
    w.framework = p.framework();
    w.model = p.model();
    w.method = p.method();
    w.kernels = p.kernels();
    w.gpus = p.gpus();
    w.batch = p.batch();
    w.seq = p.seq();
    w.precision = p.precision();
    w.activation_checkpointing = p.activation_checkpointing();
    w.status = p.status();
    w.error = p.error();
    w.tokens_per_second = p.tokens_per_second();
    if (p.has_pct_change()) w.pct_change = p.pct_change();
    w.ms_per_step = p.ms_per_step();
    w.peak_allocated_bytes = p.peak_allocated_bytes();
    w.peak_reserved_bytes = p.peak_reserved_bytes();
    w.loss_first = p.loss_first();
    w.loss_last = p.loss_last();
    w.warmup_steps = p.warmup_steps();
    w.steps = p.steps();
    w.max_batch = p.max_batch();
    w.device = p.device();
    EXPECT_EQ(lines[i], BenchResultToJson(w));
  }
  const nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_TRUE(first["pct_change"].is_null());
  EXPECT_TRUE(first["batch"].is_number_integer()) << "a number, not proto JSON's \"4\"";
  EXPECT_EQ(nlohmann::json::parse(lines[3])["max_batch"], true);
  EXPECT_THAT(r.err, HasSubstr("bench 1/4"));  // the commentary stays on stderr
}

TEST_F(BenchTest, ExitCodeFollowsTheJobAndTheRowsDoneAreStillPrinted) {
  Script(Job::FAILED);
  FoakctlResult r = Run({"bench", "--model", "/m"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_EQ(r.out, kTable);
  EXPECT_THAT(r.err, HasSubstr("FAILED  Stopped: bye"));

  FakeFoakd other;
  {
    std::lock_guard<std::mutex> lock(other.jobs.mu);
    other.jobs.events = {StateEvent(kFirstJob, 1, Job::QUEUED, "Created", ""),
                         StateEvent(kFirstJob, 2, Job::CANCELLED, "Cancelled", "by request")};
  }
  r = RunFoakctl({"bench", "--model", "/m", "--server", other.address()}, options_);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("No benchmark rows."));
}

TEST_F(BenchTest, ReconnectsWithoutRepeatingRows) {
  Script(Job::SUCCEEDED, /*break_after_seq=*/4);
  const FoakctlResult r = Run({"bench", "--model", "/m"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, kTable);
  EXPECT_THAT(r.err, HasSubstr("reconnecting after event 4"));
  const std::vector<std::string> parts = absl::StrSplit(r.err, "bench 2/4");
  EXPECT_EQ(parts.size(), 2u) << "row 2 printed once: " << r.err;
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.watch_requests.size(), 2u);
  EXPECT_EQ(server_.jobs.watch_requests[1].after_seq(), 4);
}

TEST_F(BenchTest, UsageErrorsNameTheFlagAndSendNothing) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"bench"}, "--model is required"},
      {{"bench", "--model", "/m", "--method", "full", "--lora-r", "8"}, "--lora-r"},
      {{"bench", "--model", "/m", "--method", "full", "--lora-target-modules", "q_proj"},
       "--lora-target-modules"},
      {{"bench", "--model", "/m", "--lora-target-modules", "q_proj,,v_proj"},
       "--lora-target-modules"},
      {{"bench", "--model", "/m", "--batch", "4,x"}, "--batch: '4,x'"},
      {{"bench", "--model", "/m", "--batch", "0"}, "--batch"},
      {{"bench", "--model", "/m", "--seq", "1"},
       "--seq: '1' is not a comma-separated list of integers >= 2"},
      {{"bench", "--model", "/m", "--kernels", " "}, "--kernels"},
      {{"bench", "--model", "/m", "--steps", "0"}, "--steps: must be >= 1"},
      {{"bench", "--model", "/m", "--warmup", "-1"}, "--warmup"},
      {{"bench", "--model", "/m", "--max-batch-limit", "8"},
       "--max-batch-limit: only with --find-max-batch"},
      {{"bench", "--model", "/m", "--precision", "fp16"}, "--precision: 'fp16'"},
      {{"bench", "--model", "/m", "--method", "dora"}, "--method: 'dora' is not a method; use full, lora or qlora"},
      {{"bench", "--model", "/m", "--method", "lora", "--double-quant", "true"},
       "--double-quant: NF4 settings need --method qlora"},
      {{"bench", "--model", "/m", "-o", "yaml"}, "use table, json or markdown"},
      {{"bench", "--model", "/m", "extra"}, "bench takes no arguments"},
      {{"bench", "--model", "/m", "--train", "/d.jsonl"}, "unknown flag --train"},
  };
  for (const auto& [args, needle] : cases) {
    const FoakctlResult r = Run(args);
    EXPECT_EQ(r.code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(needle)) << absl::StrJoin(args, " ");
  }
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  EXPECT_TRUE(server_.jobs.create_requests.empty());
}

TEST_F(BenchTest, MarkdownIsOnlyForBench) {
  const FoakctlResult r = Run({"list", "-o", "markdown"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err,
              HasSubstr("-o: 'markdown' is not an output format of list; use table or json"));
}

TEST_F(BenchTest, HelpDocumentsTheFlags) {
  const FoakctlResult r = Run({"bench", "--help"});
  ASSERT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--kernels SET"));
  EXPECT_THAT(r.out, HasSubstr("(repeatable)"));
  EXPECT_THAT(r.out, HasSubstr("--find-max-batch"));
  EXPECT_THAT(r.out, HasSubstr("default bf16"));
  EXPECT_THAT(Run({"--help"}).out, HasSubstr("bench"));
}

TEST_F(BenchTest, WatchPrintsBenchRows) {
  Script(Job::SUCCEEDED);
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    Job job;
    job.set_state(Job::RUNNING);
    server_.jobs.AddJob(job);  // kFirstJob, without bench
  }
  FoakctlResult r = Run({"watch", kFirstJob});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("22:13:24  bench 2/4  foak  4 x 2048  67,890 tok/s  +34.9%  "
                               "peak 11.05 GiB\n"));
  EXPECT_THAT(r.out, HasSubstr("bench 3/4  all  4 x 2048  out of memory: CUDA out of memory."));
  r = Run({"watch", kFirstJob, "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(nlohmann::json::parse(lines[3])["bench"]["kernels"], "foak");
}

TEST(BenchJobView, ListAndGetShowRows) {
  Job job;
  job.set_id("job-1");
  job.set_state(Job::RUNNING);
  job.mutable_spec()->set_model("/m");
  foak::v1::BenchSpec* b = job.mutable_spec()->mutable_bench();
  b->add_kernel_sets("none");
  b->add_kernel_sets("rms_norm,rope");
  b->add_batch_sizes(4);
  b->add_seq_lens(2048);
  b->set_find_max_batch(true);
  job.mutable_progress()->set_step(2);
  job.mutable_progress()->set_max_steps(4);
  job.mutable_progress()->set_loss(11.9);
  job.mutable_progress()->set_tokens_per_second(67890.2);
  const std::vector<std::string> row = JobTableRow(job, absl::Now());
  EXPECT_EQ(row[3], "2/4");
  EXPECT_EQ(row[4], "") << "no loss for a benchmark";
  EXPECT_EQ(row[5], "67,890");
  const std::string details = JobDetails(job, absl::Now(), absl::UTCTimeZone());
  EXPECT_THAT(details, HasSubstr(
      "Benchmark:  kernel sets none | rms_norm,rope  batch 4  seq 2048  find max batch\n"));
  EXPECT_THAT(details, HasSubstr("Progress:   rows 2/4  67,890 tok/s\n"));
  EXPECT_THAT(details, ::testing::Not(HasSubstr("Kernels:")));
}

}  // namespace
}  // namespace foak::client
