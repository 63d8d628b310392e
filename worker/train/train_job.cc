#include "worker/train/train_job.h"

#include <torch/cuda.h>
#include <torch/utils.h>

#include <unistd.h>

#include <chrono>
#include <functional>
#include <limits>
#include <cstdlib>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "absl/strings/numbers.h"
#include "worker/lora/lora.h"
#include "worker/model/model_config.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/model/weights.h"
#include "worker/train/batch_source.h"
#include "worker/train/checkpoint.h"
#include "worker/train/data_parallel.h"
#include "worker/train/rank_batch_source.h"
#include "worker/train/memory_stats.h"
#include "worker/train/activation_checkpointing.h"
#include "worker/train/metrics_writer.h"
#include "worker/train/nonfinite.h"
#include "worker/train/precision.h"
#include "worker/train/resume.h"
#include "worker/train/evaluate.h"
#include "worker/train/example_batch_source.h"
#include "worker/train/lora_training.h"
#include "worker/train/trainer.h"
#include "worker/train/trainer_state.h"

namespace foak {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

void Info(std::FILE* info, const std::string& message) {
  if (info == nullptr) return;
  std::fprintf(info, "foak-worker: %s\n", message.c_str());
  std::fflush(info);
}


// Builds the model uninitialised on `device` (bf16 for pure bf16, else fp32:
// bf16-mixed takes its fp32 masters from it) and loads the weights into it
// straight from the memory-mapped safetensors, with no CPU copy of the model.
absl::StatusOr<LlamaForCausalLM> LoadModel(const ModelConfig& config, const std::string& dir,
                                           int64_t seed, torch::Device device,
                                           Precision precision, const KernelSet& kernels) {
  try {
    torch::manual_seed(static_cast<uint64_t>(seed));
    ModelInit init;
    init.options = torch::TensorOptions().device(device).dtype(
        precision == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat);
    init.random = false;
    init.kernels = kernels;
    LlamaForCausalLM model(config, init);
    RETURN_IF_ERROR(LoadWeights(model, dir));
    return model;
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("loading the model from ", dir));
  }
}

// The data seam: the job's dataset as a stream of micro-batches (they must be
// deterministic given the job; see batch_source.h).
absl::StatusOr<std::unique_ptr<ExampleBatchSource>> MakeBatchSource(const JobConfig& job,
                                                                    const EncoderOptions& encoder,
                                                                    const Tokenizer* tokenizer) {
  return ExampleBatchSource::Create(job, encoder, tokenizer);
}

// The model folder's tokenizer (the byte tokenizer when it has no tokenizer
// files), checked against the model's vocabulary.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadJobTokenizer(const JobConfig& job,
                                                            const ModelConfig& config,
                                                            bool* byte_tokenizer) {
  *byte_tokenizer = !PathExists(JoinPath(job.model, "tokenizer.json")) &&
                    !PathExists(JoinPath(job.model, "tokenizer.model"));
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(job.model));
  if (tokenizer->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        JoinPath(job.model, "config.json"), ": vocab_size = ", config.vocab_size, " but the ",
        *byte_tokenizer ? std::string("byte tokenizer (used because the folder has no "
                                      "tokenizer.json or tokenizer.model)")
                        : std::string("folder's tokenizer"),
        " produces ids up to ", tokenizer->vocab_size() - 1,
        "; the model needs an embedding row for every token id (vocab_size >= ",
        tokenizer->vocab_size(), ")"));
  }
  return tokenizer;
}

// What the run is, for refusing to resume a checkpoint of a different one.
absl::StatusOr<RunFingerprint> MakeFingerprint(const JobConfig& job, const ModelConfig& config,
                                               int64_t max_steps) {
  RunFingerprint f;
  f.method = job.method;
  f.hyperparameters_json = HyperparametersToJson(job.hyperparameters);
  f.max_steps = max_steps;
  ASSIGN_OR_RETURN(f.dataset_hash, FingerprintFile(job.dataset.train));
  f.dataset_options_json = DatasetOptionsToJson(job.dataset);
  f.lora_json = LoraToJson(job);
  f.quantization_json = QuantizationToJson(job);
  ModelConfig normalised = config;
  normalised.torch_dtype = "";  // a checkpoint may store another dtype of the same model
  f.model_config_hash = FingerprintBytes(ModelConfigToJson(normalised));
  return f;
}

// Test hook: FOAK_TEST_EXIT_AFTER_CHECKPOINT=N makes the worker die with
// _exit(137) (as if SIGKILLed) after step N, right after checkpoint-N is
// committed when N is a save step, so the resume tests can stop a run at an
// exact step without racing it. With several ranks, FOAK_TEST_EXIT_RANK=R
// makes only rank R die (default: every rank); FOAK_TEST_EXIT_ATTEMPT=A only
// in the launch foakd numbers A (FOAK_JOB_ATTEMPT), so a restarted gang lives.
int64_t TestExitAfterCheckpoint() {
  const char* value = std::getenv("FOAK_TEST_EXIT_AFTER_CHECKPOINT");
  int64_t step = -1;
  if (value == nullptr || !absl::SimpleAtoi(value, &step)) return -1;
  return step;
}

bool TestExitRankMatches(int rank) {
  auto matches = [](const char* name, const char* actual) {
    const char* want = std::getenv(name);
    return want == nullptr || *want == '\0' || std::string(want) == actual;
  };
  const char* attempt = std::getenv("FOAK_JOB_ATTEMPT");
  return matches("FOAK_TEST_EXIT_RANK", std::to_string(rank).c_str()) &&
         matches("FOAK_TEST_EXIT_ATTEMPT", attempt == nullptr ? "0" : attempt);
}

// A save in which every rank takes part: PrepareSave (a collective: the
// gathered master weights of sharded state), this rank's optimizer slices
// when the state is sharded and `output_dir` is given (a checkpoint, not
// final/), then `write_on_rank0`; then the ranks agree on the outcome, so a
// failure on any rank fails all of them with its own or a pointing error
// instead of leaving the others waiting. On one rank simply PrepareSave +
// write.
absl::Status SaveCollectively(Trainer& trainer, const std::string& output_dir,
                              const std::function<absl::Status()>& write_on_rank0) {
  RETURN_IF_ERROR(trainer.PrepareSave());
  if (trainer.world_size() == 1) return write_on_rank0();
  absl::Status mine;
  if (trainer.sharded() && !output_dir.empty() && trainer.rank() > 0) {
    mine = WriteOptimizerShard(trainer, output_dir);
  }
  // Rank 0 writes only once every slice is there.
  std::vector<double> failed = {mine.ok() ? 0.0 : 1.0};
  RETURN_IF_ERROR(trainer.AllReduceSum(failed));
  if (!mine.ok()) return mine;
  if (failed[0] > 0) {
    return absl::AbortedError("another rank failed to write its part of the checkpoint");
  }
  if (trainer.rank() == 0) mine = write_on_rank0();
  failed = {mine.ok() ? 0.0 : 1.0};
  RETURN_IF_ERROR(trainer.AllReduceSum(failed));
  if (!mine.ok()) return mine;
  if (failed[0] > 0) return absl::AbortedError("rank 0 failed to write the checkpoint");
  return absl::OkStatus();
}

}  // namespace

TrainerOptions MakeTrainerOptions(const JobConfig& job, int64_t max_steps) {
  const Hyperparameters& h = job.hyperparameters;
  TrainerOptions options;
  options.precision = h.precision;
  options.schedule.type = h.lr_scheduler;
  options.schedule.base_lr = h.learning_rate;
  options.schedule.warmup_steps = job.WarmupSteps(max_steps);
  options.schedule.max_steps = max_steps;
  options.schedule.min_lr_ratio = h.min_lr_ratio;
  options.weight_decay = h.weight_decay;
  options.adam_beta1 = h.adam_beta1;
  options.adam_beta2 = h.adam_beta2;
  options.adam_epsilon = h.adam_epsilon;
  options.max_grad_norm = h.max_grad_norm;
  options.skip_nonfinite = h.skip_nonfinite_steps;
  options.grad_sync.bucket_bytes = h.ddp_bucket_cap_mb << 20;
  options.zero_stage = static_cast<int>(h.zero_stage);
  return options;
}

absl::StatusOr<torch::Device> ResolveDevice(const std::string& name) {
  const bool cuda = torch::cuda::is_available();
  if (name == "auto") return cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (name == "cpu") return torch::Device(torch::kCPU);
  const bool indexed = name.size() > 5 && name.size() <= 8 && name.rfind("cuda:", 0) == 0 &&
                       name.find_first_not_of("0123456789", 5) == std::string::npos;
  if (name == "cuda" || indexed) {
    if (!cuda) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device = '", name, "' but no CUDA device is available to this LibTorch; use "
          "\"cpu\" or \"auto\""));
    }
    const int64_t index = name == "cuda" ? 0 : std::stoll(name.substr(5));
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (index >= count) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device = '", name, "' but only ", count, " CUDA device(s) exist (cuda:0..cuda:",
          count - 1, ")"));
    }
    return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device = '", name, "'; expected one of auto, cpu, cuda, cuda:N"));
}

absl::Status RunTrainJob(const JobConfig& job, std::FILE* metrics_echo, std::FILE* info,
                         TrainObserver* observer) {
  const Hyperparameters& h = job.hyperparameters;
  const bool lora = job.UsesLora();  // lora or qlora
  // Data parallel (data_parallel.h): joins the other ranks first, so a rank
  // that never comes fails the job before any work is done.
  ASSIGN_OR_RETURN(RankContext ranks, JoinRanks(job));
  const torch::Device device = ranks.device;
  const int world = ranks.env.world_size;
  const bool main_rank = ranks.is_main();
  RankObserver rank_observer(observer, ranks.env.rank);
  if (observer != nullptr) observer = &rank_observer;
  if (!main_rank) {
    // Rank 0 tells people what happens; the others stay quiet (their
    // errors still reach stderr through the caller).
    info = nullptr;
    metrics_echo = nullptr;
  }
  if (ranks.env.distributed()) {
    std::fprintf(stderr, "foak-worker: joined as %s on %s\n", ranks.env.Describe().c_str(),
                 device.str().c_str());
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(job.model));
  bool byte_tokenizer = false;
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   LoadJobTokenizer(job, config, &byte_tokenizer));
  ASSIGN_OR_RETURN(EncoderOptions encoder, MakeEncoderOptions(job, config, byte_tokenizer));
  ASSIGN_OR_RETURN(std::unique_ptr<ExampleBatchSource> data,
                   MakeBatchSource(job, encoder, tokenizer.get()));
  ASSIGN_OR_RETURN(std::unique_ptr<Evaluator> evaluator,
                   Evaluator::Create(job, encoder, tokenizer.get(), data->pad_id()));
  // This rank's share of the stream (all of it on one rank).
  RankBatchSource rank_data(data.get(), ranks.env.rank, world);
  BatchSource* train_data = world > 1 ? static_cast<BatchSource*>(&rank_data) : data.get();
  const int64_t max_steps = job.ResolveMaxSteps(train_data->micro_batches_per_epoch());

  // Resume: pick and check the checkpoint before anything is loaded or written.
  ASSIGN_OR_RETURN(RunFingerprint fingerprint, MakeFingerprint(job, config, max_steps));
  std::vector<std::string> notes;
  ASSIGN_OR_RETURN(std::optional<ResumePoint> resume, PlanResume(job, fingerprint, &notes));
  for (const std::string& note : notes) Info(info, note);
  // A LoRA checkpoint holds only the adapter: the base always comes from the model.
  const std::string weights_dir = resume.has_value() && !lora ? resume->dir : job.model;

  std::optional<LlamaForCausalLM> loaded;
  if (job.Quantized()) {
    // qlora: the decoder projections go straight into NF4 on the device.
    torch::manual_seed(static_cast<uint64_t>(h.seed));
    Nf4Stats nf4;
    ASSIGN_OR_RETURN(loaded, LoadQuantizedBase(config, job, device,
                                               h.precision == Precision::kBf16 ? torch::kBFloat16
                                                                               : torch::kFloat,
                                               job.kernels, &nf4));
    Info(info, absl::StrFormat(
                   "NF4 base (%s): %d decoder projections, %d weights in %.4g MiB (%.4f bytes "
                   "per weight) instead of %.4g MiB; lm_head, embeddings and norms unquantised",
                   job.quantization.double_quant ? "double quantised" : "fp32 scales",
                   nf4.linears, nf4.params, nf4.nf4_bytes / 1048576.0, nf4.BytesPerParam(),
                   nf4.dense_bytes / 1048576.0));
  } else {
    ASSIGN_OR_RETURN(loaded,
                     LoadModel(config, weights_dir, h.seed, device, h.precision, job.kernels));
  }
  LlamaForCausalLM model = *loaded;
  if (lora) {
    std::optional<std::string> adapter_dir;
    if (resume.has_value()) adapter_dir = resume->dir;
    ASSIGN_OR_RETURN(int64_t trainable, PrepareLoraModel(model, job, adapter_dir));
    Info(info, absl::StrFormat("LoRA r=%d alpha=%g on %d projections: %d trainable parameters",
                               job.lora.r, job.lora.alpha, CountLoraAdapters(model),
                               trainable));
  }
  if (h.gradient_checkpointing) SetActivationCheckpointing(model, true);
  TrainerOptions trainer_options = MakeTrainerOptions(job, max_steps);
  trainer_options.keep_trainable_fp32 = lora;
  trainer_options.collectives = ranks.collectives();
  ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                   Trainer::Create(model, trainer_options, device));
  TrainerState state;  // the loop's part of the checkpoint state
  state.fingerprint = fingerprint;
  if (resume.has_value()) {
    RETURN_IF_ERROR(RestoreTrainingState(*trainer, resume->dir, resume->state));
    RETURN_IF_ERROR(data->Resume(resume->state.micro_batches_consumed,
                                 resume->state.examples_consumed));
    state.micro_batches_consumed = resume->state.micro_batches_consumed;
    state.log_window = resume->state.log_window;
    state.log_history = resume->state.log_history;
    state.elapsed_s = resume->state.elapsed_s;
    state.last_loss = resume->state.last_loss;
  }
  Info(info, absl::StrFormat(
                 "training %s (%s) on %s: %s; for %d steps on %s, precision %s, kernels: %s%s",
                 job.model, job.method, job.dataset.train, train_data->Describe(), max_steps,
                 world > 1 ? absl::StrCat(world, " ranks (", device.is_cuda() ? "NCCL" : "Gloo",
                                          "), rank 0 on ", device.str())
                           : device.str(),
                 PrecisionName(h.precision), KernelSetString(job.kernels),
                 h.gradient_checkpointing ? ", activation checkpointing" : ""));
  for (const std::string& error : data->stats().bad_line_errors) {
    Info(info, absl::StrCat("skipped bad line: ", error));
  }
  if (evaluator != nullptr) {
    Info(info, absl::StrCat("validation data: ", DescribeDatasetStats(evaluator->stats()),
                            "; evaluated ",
                            h.eval_steps > 0 ? absl::StrCat("every ", h.eval_steps,
                                                            " steps and at the end")
                                             : std::string("at the end")));
    for (const std::string& error : evaluator->stats().bad_line_errors) {
      Info(info, absl::StrCat("skipped bad line: ", error));
    }
  }
  if (h.max_seq_len > config.max_position_embeddings) {
    Info(info, absl::StrCat("warning: max_seq_len ", h.max_seq_len,
                            " exceeds the model's max_position_embeddings ",
                            config.max_position_embeddings));
  }

  // Rank 0 owns the output folder; the others write nothing there.
  std::unique_ptr<MetricsWriter> metrics;
  if (main_rank) {
    if (absl::Status made = MakeDirs(job.output_dir); !made.ok()) {
      return absl::Status(made.code(),
                          absl::StrCat("output_dir '", job.output_dir, "' cannot be created: ",
                                       made.message(), "; choose a folder this worker can write"));
    }
    const std::string metrics_path = JoinPath(job.output_dir, "metrics.jsonl");
    if (resume.has_value()) {
      // Steps after the checkpoint were logged by the interrupted run and are redone.
      RETURN_IF_ERROR(TruncateMetricsFile(metrics_path, trainer->step()).status());
    }
    ASSIGN_OR_RETURN(metrics, MetricsWriter::Open(metrics_path, metrics_echo));
  }
  CheckpointOptions checkpoint_options;
  checkpoint_options.tokenizer_source_dir = job.model;
  checkpoint_options.max_shard_bytes = static_cast<uint64_t>(h.max_shard_bytes);
  checkpoint_options.save_total_limit = h.save_total_limit;
  if (lora) checkpoint_options.save_model = LoraSaveHook(job);
  const int64_t exit_after_checkpoint = TestExitAfterCheckpoint();

  const Clock::time_point start = Clock::now();
  const double elapsed_before = state.elapsed_s;
  Clock::time_point window_start = start;
  LogWindow& window = state.log_window;
  int64_t skipped_in_a_row = 0;  // on_nonfinite = "skip"
  if (observer != nullptr) observer->OnStart(max_steps, trainer->step(), device.str());
  for (int64_t step = trainer->step() + 1; step <= max_steps; ++step) {
    std::vector<Batch> micro_batches;
    for (int64_t k = 0; k < h.gradient_accumulation_steps; ++k) {
      ASSIGN_OR_RETURN(Batch batch, train_data->Next());
      micro_batches.push_back(std::move(batch));
    }
    state.micro_batches_consumed += h.gradient_accumulation_steps * world;  // the job's
    state.examples_consumed = data->examples_consumed();
    ASSIGN_OR_RETURN(StepResult result, trainer->Step(micro_batches));
    if (result.skipped) {
      ++skipped_in_a_row;
      const std::string what = absl::StrCat("step ", result.step, ": the loss is ", result.loss,
                                            " and the gradient norm ", result.grad_norm);
      if (skipped_in_a_row > h.max_consecutive_skips) {
        return NonFiniteStepError(absl::StrCat(
            what, "; that makes ", skipped_in_a_row, " non-finite steps in a row, more than "
            "hyperparameters.max_consecutive_skips = ", h.max_consecutive_skips, ": training "
            "has diverged; lower hyperparameters.learning_rate or check the data"));
      }
      Info(info, absl::StrCat(what, "; its update was skipped (on_nonfinite = \"skip\", ",
                              skipped_in_a_row, " in a row)"));
    } else {
      skipped_in_a_row = 0;
      state.last_loss = result.loss;
      window.loss_sum += result.loss;
      ++window.steps;  // the logged loss is the mean over the steps that updated
    }
    state.last_learning_rate = result.learning_rate;
    window.tokens += result.input_tokens;
    if (step % h.logging_steps == 0 || step == max_steps) {
      const Clock::time_point now = Clock::now();
      const double window_s = Seconds(window_start, now);
      StepMetrics m;
      m.step = result.step;
      m.loss = window.steps > 0 ? window.loss_sum / static_cast<double>(window.steps)
                                : std::numeric_limits<double>::quiet_NaN();  // all skipped
      m.learning_rate = result.learning_rate;
      m.grad_norm = result.grad_norm;
      m.tokens = window.tokens;
      m.tokens_per_second = window_s > 0 ? static_cast<double>(window.tokens) / window_s : 0.0;
      m.peak_memory_bytes = PeakMemoryBytes(device);
      m.peak_reserved_bytes = PeakReservedBytes(device);
      m.elapsed_s = elapsed_before + Seconds(start, now);
      if (metrics != nullptr) RETURN_IF_ERROR(metrics->Write(m));
      if (observer != nullptr) observer->OnStep(m);
      state.log_history.push_back(MetricsWriter::ToJsonLine(m));
      window = LogWindow();
      window_start = now;
    }
    if (evaluator != nullptr && EvalDue(h, step, max_steps)) {
      const Clock::time_point eval_start = Clock::now();
      ASSIGN_OR_RETURN(EvalResult eval, evaluator->Run(*trainer));
      EvalMetrics e;
      e.step = step;
      e.eval_loss = eval.loss;
      e.eval_tokens = eval.target_tokens;
      e.eval_examples = eval.examples;
      e.eval_s = Seconds(eval_start, Clock::now());
      if (metrics != nullptr) RETURN_IF_ERROR(metrics->Write(e));
      if (observer != nullptr) observer->OnEval(e);
      state.log_history.push_back(MetricsWriter::ToJsonLine(e));
      window_start = Clock::now();  // evaluation time is not training throughput
    }
    if (h.save_steps > 0 && (step % h.save_steps == 0 || step == max_steps)) {
      // Sharded state: every rank takes part (data_parallel.h, checkpoint.h).
      RETURN_IF_ERROR(SaveCollectively(*trainer, job.output_dir, [&]() -> absl::Status {
        state.epoch = static_cast<double>(state.micro_batches_consumed) /
                      static_cast<double>(std::max<int64_t>(1, data->micro_batches_per_epoch()));
        state.elapsed_s = elapsed_before + Seconds(start, Clock::now());
        ASSIGN_OR_RETURN(std::string dir,
                         WriteTrainingCheckpoint(*trainer, state, job.output_dir,
                                                 checkpoint_options));
        Info(info, absl::StrCat("saved ", dir));
        if (observer != nullptr) observer->OnCheckpoint(step, dir);
        return absl::OkStatus();
      }));
      window_start = Clock::now();  // saving time is not training throughput
    }
    if (step == exit_after_checkpoint && TestExitRankMatches(ranks.env.rank)) ::_exit(137);
  }
  const std::string final_dir = JoinPath(job.output_dir, "final");
  RETURN_IF_ERROR(SaveCollectively(*trainer, "", [&]() -> absl::Status {
    RETURN_IF_ERROR(WriteCheckpoint(*trainer, final_dir, checkpoint_options));
    if (observer != nullptr) observer->OnCheckpoint(max_steps, final_dir);
    Info(info, absl::StrFormat("trained to step %d in %.1f s; final %s in %s", max_steps,
                               elapsed_before + Seconds(start, Clock::now()),
                               lora ? "LoRA adapter" : "model", final_dir));
    if (lora && job.save_merged) {
      const std::string merged_dir = JoinPath(job.output_dir, "merged");
      RETURN_IF_ERROR(WriteMergedModel(job, config, final_dir, merged_dir, device));
      Info(info, absl::StrCat("merged model (base + adapter) in ", merged_dir));
    }
    return absl::OkStatus();
  }));
  return absl::OkStatus();
}

}  // namespace foak
