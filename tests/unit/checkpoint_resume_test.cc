// Tests of resumable checkpoints: trainer_state.json round trip, the run
// fingerprint check, checkpoint folder selection (newest COMPLETE, tmp
// leftovers and folders without trainer state ignored), keep-last-K rotation,
// metrics truncation, the resume plan, RNG capture, and the optimizer state
// round trip through a real checkpoint on a tiny model: a trainer restored
// from checkpoint-<k> takes the next step bit-identically to the original.
#include <stdlib.h>

#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <map>
#include <memory>
#include <limits>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "worker/data/batcher.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"
#include "worker/train/checkpoint.h"
#include "worker/train/checkpoint_dir.h"
#include "worker/train/job.h"
#include "worker/train/resume.h"
#include "worker/train/trainer.h"
#include "worker/train/trainer_state.h"

namespace foak {
namespace {

bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/foak_ckpt_test_XXXXXX";
    const char* dir = mkdtemp(tmpl);
    EXPECT_NE(dir, nullptr);
    path_ = dir == nullptr ? "/tmp" : dir;
  }
  ~TempDir() { RemoveTree(path_).IgnoreError(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TrainerState SampleState(int64_t step) {
  TrainerState s;
  s.global_step = step;
  s.micro_batches_consumed = 3 * step;
  s.epoch = 0.1 + step / 7.0;  // not exactly representable in decimal
  s.lr_schedule.type = LrSchedulerType::kLinear;
  s.lr_schedule.base_lr = 3e-3;
  s.lr_schedule.warmup_steps = 2;
  s.lr_schedule.max_steps = 100;
  s.lr_schedule.min_lr_ratio = 0.1;
  s.last_learning_rate = 1.0 / 3.0;
  s.last_loss = 5.551115123125783e-17;
  s.elapsed_s = 12.5;
  s.cpu_rng_state = std::string("\0\1\2\xff\xfe rng", 10);
  s.cuda_rng_states = {std::string("\0cuda0", 6), "cuda1"};
  s.log_window = {2.0 / 3.0, 2, 77};
  s.fingerprint.method = "full";
  s.fingerprint.hyperparameters_json = HyperparametersToJson(Hyperparameters());
  s.fingerprint.max_steps = 100;
  s.fingerprint.dataset_hash = FingerprintBytes("data");
  s.fingerprint.model_config_hash = FingerprintBytes("config");
  s.log_history = {R"({"step":1,"loss":0.1})", R"({"step":2,"loss":0.30000000000000004})"};
  return s;
}

TEST(TrainerState, JsonRoundTripIsExact) {
  const TrainerState s = SampleState(8);
  auto back = ParseTrainerState(TrainerStateToJson(s), "t.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->global_step, 8);
  EXPECT_EQ(back->micro_batches_consumed, 24);
  EXPECT_EQ(back->epoch, s.epoch);  // exact, not near
  EXPECT_EQ(back->lr_schedule.type, LrSchedulerType::kLinear);
  EXPECT_EQ(back->lr_schedule.base_lr, 3e-3);
  EXPECT_EQ(back->lr_schedule.warmup_steps, 2);
  EXPECT_EQ(back->lr_schedule.max_steps, 100);
  EXPECT_EQ(back->lr_schedule.min_lr_ratio, 0.1);
  EXPECT_EQ(back->last_learning_rate, 1.0 / 3.0);
  EXPECT_EQ(back->last_loss, s.last_loss);
  EXPECT_EQ(back->cpu_rng_state, s.cpu_rng_state);
  EXPECT_EQ(back->cuda_rng_states, s.cuda_rng_states);
  EXPECT_EQ(back->log_window.loss_sum, 2.0 / 3.0);
  EXPECT_EQ(back->log_window.steps, 2);
  EXPECT_EQ(back->log_window.tokens, 77);
  EXPECT_EQ(back->fingerprint.max_steps, 100);
  EXPECT_EQ(back->fingerprint.dataset_hash, s.fingerprint.dataset_hash);
  EXPECT_TRUE(CheckResumeCompatible(s.fingerprint, back->fingerprint, "x").ok());
  ASSERT_EQ(back->log_history.size(), 2u);
  EXPECT_EQ(back->log_history[1], R"({"step":2,"loss":0.30000000000000004})");
}

TEST(TrainerState, RejectsIncompleteOrDamagedFiles) {
  std::string json = TrainerStateToJson(SampleState(4));
  const size_t at = json.find("\"complete\": true");
  ASSERT_NE(at, std::string::npos);
  std::string incomplete = json;
  incomplete.replace(at, 16, "\"complete\": false");
  EXPECT_TRUE(Contains(ParseTrainerState(incomplete, "t.json").status(), "not marked complete"));
  auto cut = ParseTrainerState(json.substr(0, json.size() / 2), "t.json");
  EXPECT_FALSE(cut.ok());
  EXPECT_TRUE(Contains(cut.status(), "t.json"));
}

TEST(TrainerState, FingerprintDifferencesAreNamed) {
  const RunFingerprint base = SampleState(1).fingerprint;
  RunFingerprint other = base;
  Hyperparameters h;
  h.logging_steps = 7;
  h.save_steps = 3;
  h.save_total_limit = 2;
  h.max_shard_bytes = 1000;
  other.hyperparameters_json = HyperparametersToJson(h);
  EXPECT_TRUE(CheckResumeCompatible(base, other, "ck").ok()) << "logging/saving may change";

  h.learning_rate = 1.0;
  other.hyperparameters_json = HyperparametersToJson(h);
  other.dataset_hash = FingerprintBytes("other data");
  absl::Status s = CheckResumeCompatible(base, other, "/o/checkpoint-4");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(s, "/o/checkpoint-4")) << s;
  EXPECT_TRUE(Contains(s, "dataset.train contents")) << s;
  EXPECT_TRUE(Contains(s, "hyperparameters.learning_rate: 2e-05 -> 1.0")) << s;
  EXPECT_TRUE(Contains(s, "resume_ignore_mismatch")) << s;
  EXPECT_FALSE(Contains(s, "logging_steps")) << s;
}

TEST(TrainerState, FileFingerprintFollowsContents) {
  TempDir tmp;
  const std::string a = tmp.path() + "/a";
  ASSERT_TRUE(WriteFileAtomically(a, "hello").ok());
  auto fa = FingerprintFile(a);
  ASSERT_TRUE(fa.ok());
  EXPECT_EQ(*fa, FingerprintBytes("hello"));
  // FNV-1a 64 of "hello" (the published test vector value).
  EXPECT_EQ(*fa, "fnv1a64:a430d84680aabd0b:5");
  ASSERT_TRUE(WriteFileAtomically(a, "hellp").ok());
  EXPECT_NE(*FingerprintFile(a), *fa);
  EXPECT_EQ(FingerprintFile(tmp.path() + "/missing").status().code(), absl::StatusCode::kNotFound);
}

// A folder that passes IsCompleteCheckpoint (trainer state + optimizer + config).
void FakeCheckpoint(const std::string& output_dir, int64_t step, bool with_state = true,
                    int64_t state_step = -1) {
  const std::string dir = JoinPath(output_dir, CheckpointDirName(step));
  ASSERT_TRUE(MakeDirs(dir).ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "config.json"), "{}").ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, kOptimizerStateFile), "x").ok());
  if (with_state) {
    ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, kTrainerStateFile),
                                    TrainerStateToJson(SampleState(state_step < 0 ? step : state_step)))
                    .ok());
  }
}

TEST(CheckpointDir, NamesAndSteps) {
  EXPECT_EQ(CheckpointDirName(12), "checkpoint-12");
  EXPECT_EQ(CheckpointStepFromName("checkpoint-12"), 12);
  EXPECT_EQ(CheckpointStepFromName("checkpoint-0"), 0);
  EXPECT_FALSE(CheckpointStepFromName("checkpoint-12.tmp.77").has_value());
  EXPECT_FALSE(CheckpointStepFromName("checkpoint-").has_value());
  EXPECT_FALSE(CheckpointStepFromName("checkpoint--1").has_value());
  EXPECT_FALSE(CheckpointStepFromName("final").has_value());
}

TEST(CheckpointDir, NewestCompleteIgnoresTempsAndHalfFolders) {
  TempDir out;
  FakeCheckpoint(out.path(), 4);
  FakeCheckpoint(out.path(), 8);
  FakeCheckpoint(out.path(), 10, /*with_state=*/false);         // crashed before the state
  FakeCheckpoint(out.path(), 11, /*with_state=*/true, 3);        // state of another step
  ASSERT_TRUE(MakeDirs(out.path() + "/checkpoint-12.tmp.999").ok());  // a writer's temp
  ASSERT_TRUE(WriteFileAtomically(out.path() + "/checkpoint-12.tmp.999/trainer_state.json",
                                  TrainerStateToJson(SampleState(12)))
                  .ok());
  ASSERT_TRUE(MakeDirs(out.path() + "/checkpoint-99x").ok());

  auto latest = FindLatestCheckpoint(out.path());
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 8);
  EXPECT_EQ((*latest)->path, out.path() + "/checkpoint-8");
  EXPECT_TRUE(Contains(IsCompleteCheckpoint(out.path() + "/checkpoint-10"), "trainer_state.json"));
  EXPECT_TRUE(Contains(IsCompleteCheckpoint(out.path() + "/checkpoint-11"), "global_step 3"));

  auto removed = RemoveStaleCheckpointTemps(out.path());
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, std::vector<std::string>{out.path() + "/checkpoint-12.tmp.999"});
  EXPECT_FALSE(PathExists(out.path() + "/checkpoint-12.tmp.999"));
  EXPECT_TRUE(PathExists(out.path() + "/checkpoint-10"));  // not a temp: left for the user

  TempDir empty;
  auto none = FindLatestCheckpoint(empty.path() + "/absent");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(CheckpointDir, RotationKeepsNewestKAndTheOneJustWritten) {
  TempDir out;
  for (int64_t step : {2, 4, 6, 8}) FakeCheckpoint(out.path(), step);
  auto removed = RotateCheckpoints(out.path(), 2, out.path() + "/checkpoint-8");
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->size(), 2u);
  EXPECT_FALSE(PathExists(out.path() + "/checkpoint-2"));
  EXPECT_FALSE(PathExists(out.path() + "/checkpoint-4"));
  EXPECT_TRUE(PathExists(out.path() + "/checkpoint-6"));
  // A run resumed from an earlier step that just wrote an OLDER step than
  // others on disk keeps it; the limit still holds.
  FakeCheckpoint(out.path(), 3);
  removed = RotateCheckpoints(out.path(), 2, out.path() + "/checkpoint-3");
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(PathExists(out.path() + "/checkpoint-3"));
  EXPECT_FALSE(PathExists(out.path() + "/checkpoint-6"));
  EXPECT_TRUE(PathExists(out.path() + "/checkpoint-8"));
  // 0 keeps everything.
  EXPECT_TRUE(RotateCheckpoints(out.path(), 0, "")->empty());
}

TEST(CheckpointDir, CommitReplacesAnExistingFolderWhole) {
  TempDir out;
  FakeCheckpoint(out.path(), 5);
  ASSERT_TRUE(WriteFileAtomically(out.path() + "/checkpoint-5/stale", "old").ok());
  const std::string tmp = CheckpointTempDir(out.path(), 5);
  ASSERT_TRUE(MakeDirs(tmp).ok());
  ASSERT_TRUE(WriteFileAtomically(tmp + "/fresh", "new").ok());
  ASSERT_TRUE(CommitCheckpointDir(tmp, out.path() + "/checkpoint-5").ok());
  EXPECT_FALSE(PathExists(tmp));
  EXPECT_TRUE(PathExists(out.path() + "/checkpoint-5/fresh"));
  EXPECT_FALSE(PathExists(out.path() + "/checkpoint-5/stale"));
  auto names = ListDir(out.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"checkpoint-5"});  // nothing left aside
}

TEST(Resume, MetricsAreCutBackToTheCheckpointStep) {
  TempDir out;
  const std::string path = out.path() + "/metrics.jsonl";
  ASSERT_TRUE(WriteFileAtomically(path, "{\"step\": 1, \"loss\": 2}\n{\"step\": 2, \"loss\": 1}\n"
                                        "{\"step\": 3, \"loss\": 0.5}\n{\"step\": 4, \"lo")
                  .ok());
  auto dropped = TruncateMetricsFile(path, 2);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, 2);
  EXPECT_EQ(*ReadFileToString(path), "{\"step\": 1, \"loss\": 2}\n{\"step\": 2, \"loss\": 1}\n");
  EXPECT_EQ(*TruncateMetricsFile(out.path() + "/absent.jsonl", 2), 0);
  EXPECT_FALSE(PathExists(out.path() + "/absent.jsonl"));
}

TEST(Resume, PlanPicksLatestRefusesMixingAndChecksPaths) {
  TempDir out;
  JobConfig job;
  job.model = "/models/m";
  job.output_dir = out.path();
  const RunFingerprint fp = SampleState(1).fingerprint;
  std::vector<std::string> notes;

  job.resume_from_checkpoint.mode = ResumeFrom::Mode::kLatest;
  auto plan = PlanResume(job, fp, &notes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->has_value()) << "no checkpoint yet: a fresh start";

  FakeCheckpoint(out.path(), 4);
  FakeCheckpoint(out.path(), 8);
  ASSERT_TRUE(MakeDirs(out.path() + "/checkpoint-9.tmp.1").ok());
  plan = PlanResume(job, fp, &notes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(plan->has_value());
  EXPECT_EQ((*plan)->dir, out.path() + "/checkpoint-8");
  EXPECT_EQ((*plan)->state.global_step, 8);
  EXPECT_FALSE(PathExists(out.path() + "/checkpoint-9.tmp.1"));

  job.resume_from_checkpoint = ParseResumeFlag(out.path() + "/checkpoint-4/");
  EXPECT_EQ(job.resume_from_checkpoint.mode, ResumeFrom::Mode::kPath);
  plan = PlanResume(job, fp, &notes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ((*plan)->dir, out.path() + "/checkpoint-4");

  job.resume_from_checkpoint = ParseResumeFlag(out.path() + "/checkpoint-5");
  EXPECT_TRUE(Contains(PlanResume(job, fp, &notes).status(), "checkpoint-5"));

  job.resume_from_checkpoint.mode = ResumeFrom::Mode::kNone;
  absl::Status fresh = PlanResume(job, fp, &notes).status();
  EXPECT_EQ(fresh.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(fresh, "resume_from_checkpoint")) << fresh;

  RunFingerprint changed = fp;
  changed.max_steps = 50;
  job.resume_from_checkpoint.mode = ResumeFrom::Mode::kLatest;
  absl::Status mismatch = PlanResume(job, changed, &notes).status();
  EXPECT_TRUE(Contains(mismatch, "max_steps (resolved): 100 -> 50")) << mismatch;
  job.resume_ignore_mismatch = true;
  EXPECT_TRUE(PlanResume(job, changed, &notes).ok());
  changed.max_steps = 5;  // before the checkpoint's step: impossible even when forced
  EXPECT_TRUE(Contains(PlanResume(job, changed, &notes).status(), "beyond this job's max_steps"));
}

TEST(Resume, JobFieldsParseAndValidate) {
  auto parse = [](const std::string& extra) {
    return ParseJobConfig(R"({"model": "m", "dataset": {"train": "d.jsonl"}, "output_dir": "/o",
                             "hyperparameters": {"save_steps": 4, "save_total_limit": 2})" +
                              extra + "}",
                          "job.json");
  };
  auto job = parse("");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->hyperparameters.save_total_limit, 2);
  EXPECT_EQ(job->resume_from_checkpoint.mode, ResumeFrom::Mode::kNone);
  EXPECT_FALSE(job->resume_ignore_mismatch);
  EXPECT_EQ(parse(R"(, "resume_from_checkpoint": true)")->resume_from_checkpoint.mode,
            ResumeFrom::Mode::kLatest);
  EXPECT_EQ(parse(R"(, "resume_from_checkpoint": "latest")")->resume_from_checkpoint.mode,
            ResumeFrom::Mode::kLatest);
  EXPECT_EQ(parse(R"(, "resume_from_checkpoint": false)")->resume_from_checkpoint.mode,
            ResumeFrom::Mode::kNone);
  auto path = parse(R"(, "resume_from_checkpoint": "/o/checkpoint-4", "resume_ignore_mismatch": true)");
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(path->resume_from_checkpoint.mode, ResumeFrom::Mode::kPath);
  EXPECT_EQ(path->resume_from_checkpoint.path, "/o/checkpoint-4");
  EXPECT_TRUE(path->resume_ignore_mismatch);
  absl::Status bad = parse(R"(, "resume_from_checkpoint": 3)").status();
  EXPECT_TRUE(Contains(bad, "job.json: resume_from_checkpoint = 3; expected false, true")) << bad;
  bad = ParseJobConfig(R"({"model": "m", "dataset": {"train": "d"}, "output_dir": "o",
                          "hyperparameters": {"save_total_limit": -1}})", "job.json").status();
  EXPECT_TRUE(Contains(bad, "hyperparameters.save_total_limit = -1; expected an integer >= 0"))
      << bad;
}

TEST(Rng, CaptureAndRestoreReplaysTheSameNumbers) {
  torch::manual_seed(3);
  const std::string state = CaptureCpuRngState();
  EXPECT_FALSE(state.empty());
  torch::Tensor first = torch::rand({16});
  torch::manual_seed(99);
  ASSERT_TRUE(RestoreRngStates(state, {}, "test").ok());
  EXPECT_TRUE(torch::equal(first, torch::rand({16})));
}

// ------------------------------------------------------ real optimizer state

ModelConfig TinyConfig() {
  auto config = ParseModelConfig(R"({"model_type": "llama", "vocab_size": 258,
      "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64})",
                                 "tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

TrainerOptions Options(Precision precision) {
  TrainerOptions o;
  o.precision = precision;
  o.schedule.type = LrSchedulerType::kCosine;
  o.schedule.base_lr = 1e-2;
  o.schedule.warmup_steps = 1;
  o.schedule.max_steps = 10;
  o.weight_decay = 0.1;
  return o;
}

Batch SomeBatch(int seed) {
  std::vector<std::vector<int64_t>> examples;
  for (int i = 0; i < 2; ++i) {
    std::vector<int64_t> e = {256};
    for (int j = 0; j < 9 + i + seed; ++j) e.push_back((seed * 31 + i * 7 + j * 13) % 256);
    e.push_back(257);
    examples.push_back(e);
  }
  return Batcher::MakePaddedBatch(examples, 257);
}

class OptimizerRoundTrip : public ::testing::TestWithParam<Precision> {};

TEST_P(OptimizerRoundTrip, RestoredTrainerContinuesBitIdentically) {
  TempDir out;
  torch::manual_seed(5);
  auto a = Trainer::Create(LlamaForCausalLM(TinyConfig()), Options(GetParam()),
                           torch::Device(torch::kCPU));
  ASSERT_TRUE(a.ok()) << a.status();
  for (int s = 0; s < 3; ++s) ASSERT_TRUE((*a)->Step({SomeBatch(s)}).ok());
  TrainerState state;
  state.micro_batches_consumed = 3;
  auto dir = WriteTrainingCheckpoint(**a, state, out.path(), CheckpointOptions());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, out.path() + "/checkpoint-3");
  EXPECT_TRUE(IsCompleteCheckpoint(*dir).ok());

  // Keyed by parameter name; masters only in bf16-mixed.
  auto file = SafetensorsFile::Open(*dir + "/optimizer.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_NE((*file)->Find("model.layers.1.mlp.down_proj.weight.exp_avg_sq"), nullptr);
  EXPECT_NE((*file)->Find("lm_head.weight.step"), nullptr);
  EXPECT_EQ((*file)->Find("lm_head.weight.master") != nullptr,
            GetParam() == Precision::kBf16Mixed);
  EXPECT_EQ((*file)->metadata().at("step_count"), "3");

  // Resume as train_job does: a different seed, weights from the checkpoint.
  torch::manual_seed(77);
  ModelInit init;
  init.random = false;
  init.options = torch::TensorOptions().dtype(GetParam() == Precision::kBf16 ? torch::kBFloat16
                                                                             : torch::kFloat);
  LlamaForCausalLM model(TinyConfig(), init);
  ASSERT_TRUE(LoadWeights(model, *dir).ok());
  auto b = Trainer::Create(model, Options(GetParam()), torch::Device(torch::kCPU));
  ASSERT_TRUE(b.ok());
  auto saved = ReadTrainerState(*dir);
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE(RestoreTrainingState(**b, *dir, *saved).ok());
  EXPECT_EQ((*b)->step(), 3);
  EXPECT_EQ((*b)->optimizer().step_count(), 3);
  auto sa = (*a)->optimizer().NamedState();
  auto sb = (*b)->optimizer().NamedState();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
  }
  for (int s = 3; s < 5; ++s) {
    auto ra = (*a)->Step({SomeBatch(s)});
    auto rb = (*b)->Step({SomeBatch(s)});
    ASSERT_TRUE(ra.ok() && rb.ok());
    EXPECT_EQ(ra->loss, rb->loss) << "step " << s + 1;
    EXPECT_EQ(ra->grad_norm, rb->grad_norm);
    EXPECT_EQ(ra->learning_rate, rb->learning_rate);
  }
  auto pa = (*a)->model()->named_parameters();
  auto pb = (*b)->model()->named_parameters();
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
}

// A step skipped for a NaN (on_nonfinite = "skip") is a step without an
// optimizer update; its checkpoint still resumes.
TEST(OptimizerState, ACheckpointAfterASkippedStepResumes) {
  TempDir out;
  torch::manual_seed(5);
  TrainerOptions o = Options(Precision::kFp32);
  o.skip_nonfinite = true;
  auto a = Trainer::Create(LlamaForCausalLM(TinyConfig()), o, torch::Device(torch::kCPU));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->Step({SomeBatch(0)}).ok());
  torch::Tensor w = (*a)->model()->named_parameters()["model.embed_tokens.weight"];
  const torch::Tensor clean = w.detach().clone();
  {
    torch::NoGradGuard no_grad;
    w.select(1, 0).fill_(std::numeric_limits<float>::infinity());
  }
  auto skipped = (*a)->Step({SomeBatch(1)});
  ASSERT_TRUE(skipped.ok() && skipped->skipped);
  {
    torch::NoGradGuard no_grad;
    w.copy_(clean);
  }
  ASSERT_TRUE((*a)->Step({SomeBatch(2)}).ok());
  ASSERT_EQ((*a)->step(), 3);
  ASSERT_EQ((*a)->optimizer().step_count(), 2);
  TrainerState state;
  state.micro_batches_consumed = 3;
  auto dir = WriteTrainingCheckpoint(**a, state, out.path(), CheckpointOptions());
  ASSERT_TRUE(dir.ok()) << dir.status();

  LlamaForCausalLM model(TinyConfig());
  ASSERT_TRUE(LoadWeights(model, *dir).ok());
  auto b = Trainer::Create(model, o, torch::Device(torch::kCPU));
  ASSERT_TRUE(b.ok());
  auto saved = ReadTrainerState(*dir);
  ASSERT_TRUE(saved.ok()) << saved.status();
  absl::Status restored = RestoreTrainingState(**b, *dir, *saved);
  ASSERT_TRUE(restored.ok()) << restored;
  EXPECT_EQ((*b)->step(), 3);
  EXPECT_EQ((*b)->optimizer().step_count(), 2);
  auto ra = (*a)->Step({SomeBatch(3)});
  auto rb = (*b)->Step({SomeBatch(3)});
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(ra->loss, rb->loss);

  // The optimizer file of another checkpoint is still refused.
  saved->global_step = 2;
  absl::Status mismatched = RestoreTrainingState(**b, *dir, *saved);
  EXPECT_FALSE(mismatched.ok());
  EXPECT_NE(std::string(mismatched.message()).find("belongs to another checkpoint"),
            std::string::npos)
      << mismatched;
}

INSTANTIATE_TEST_SUITE_P(Precisions, OptimizerRoundTrip,
                         ::testing::Values(Precision::kFp32, Precision::kBf16Mixed,
                                           Precision::kBf16));

TEST(OptimizerState, LoadRejectsMissingAndForeignTensorsWithoutChangingAnything) {
  torch::manual_seed(5);
  auto t = Trainer::Create(LlamaForCausalLM(TinyConfig()), Options(Precision::kFp32),
                           torch::Device(torch::kCPU));
  ASSERT_TRUE(t.ok());
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, tensor] : (*t)->optimizer().NamedState()) {
    state[name] = torch::ones_like(tensor);
  }
  state.erase("lm_head.weight.exp_avg");
  state["lora_A.weight.exp_avg"] = torch::zeros({2});
  absl::Status s = (*t)->optimizer().LoadNamedState(state, 3, "opt.safetensors");
  EXPECT_TRUE(Contains(s, "opt.safetensors")) << s;
  EXPECT_TRUE(Contains(s, "missing 'lm_head.weight.exp_avg'")) << s;
  EXPECT_TRUE(Contains(s, "unexpected 'lora_A.weight.exp_avg'")) << s;
  EXPECT_EQ((*t)->optimizer().step_count(), 0);
  EXPECT_EQ((*t)->optimizer().exp_avgs()[0][0].abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace foak
