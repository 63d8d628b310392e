#include "worker/train/train_job.h"

#include <torch/cuda.h>
#include <torch/utils.h>

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/data/batcher.h"
#include "worker/data/byte_tokenizer.h"
#include "worker/data/text_dataset.h"
#include "worker/model/model_config.h"
#include "worker/model/weights.h"
#include "worker/train/checkpoint.h"
#include "worker/train/memory_stats.h"
#include "worker/train/metrics_writer.h"
#include "worker/train/precision.h"
#include "worker/train/trainer.h"

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
  return options;
}

// Builds the model uninitialised on `device` (bf16 for pure bf16, else fp32:
// bf16-mixed takes its fp32 masters from it) and loads the weights into it
// straight from the memory-mapped safetensors, with no CPU copy of the model.
absl::StatusOr<LlamaForCausalLM> LoadModel(const ModelConfig& config, const std::string& dir,
                                           int64_t seed, torch::Device device,
                                           Precision precision) {
  try {
    torch::manual_seed(static_cast<uint64_t>(seed));
    ModelInit init;
    init.options = torch::TensorOptions().device(device).dtype(
        precision == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat);
    init.random = false;
    LlamaForCausalLM model(config, init);
    RETURN_IF_ERROR(LoadWeights(model, dir));
    return model;
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("loading the model from ", dir));
  }
}

}  // namespace

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

absl::Status RunTrainJob(const JobConfig& job, std::FILE* metrics_echo, std::FILE* info) {
  const Hyperparameters& h = job.hyperparameters;
  ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(job.device));
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(job.model));
  if (absl::Status s = ByteTokenizer::CheckModelVocab(config.vocab_size); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(JoinPath(job.model, "config.json"), ": ", s.message()));
  }

  TextDatasetOptions data_options;
  data_options.path = job.train_data;
  data_options.max_seq_len = h.max_seq_len;
  data_options.seed = static_cast<uint64_t>(h.seed);
  ASSIGN_OR_RETURN(std::unique_ptr<TextDataset> dataset, TextDataset::Open(data_options));
  const TextDatasetStats& stats = dataset->stats();
  const int64_t rows_per_epoch = h.packing ? stats.num_packed_rows : stats.num_examples;
  const int64_t micro_batches_per_epoch = (rows_per_epoch + h.batch_size - 1) / h.batch_size;
  const int64_t max_steps = job.ResolveMaxSteps(micro_batches_per_epoch);

  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadModel(config, job.model, h.seed, device, h.precision));
  ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                   Trainer::Create(model, MakeTrainerOptions(job, max_steps), device));
  Info(info, absl::StrFormat(
                 "training %s on %s (%d examples, %d tokens, %d micro-batches per epoch) for %d "
                 "steps on %s, precision %s",
                 job.model, job.train_data, stats.num_examples, stats.num_tokens,
                 micro_batches_per_epoch, max_steps, device.str(), PrecisionName(h.precision)));
  if (h.max_seq_len > config.max_position_embeddings) {
    Info(info, absl::StrCat("warning: max_seq_len ", h.max_seq_len,
                            " exceeds the model's max_position_embeddings ",
                            config.max_position_embeddings));
  }

  RETURN_IF_ERROR(MakeDirs(job.output_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<MetricsWriter> metrics,
                   MetricsWriter::Open(JoinPath(job.output_dir, "metrics.jsonl"), metrics_echo));
  CheckpointOptions checkpoint_options;
  checkpoint_options.tokenizer_source_dir = job.model;
  checkpoint_options.max_shard_bytes = static_cast<uint64_t>(h.max_shard_bytes);

  BatcherOptions batcher_options;
  batcher_options.batch_size = h.batch_size;
  batcher_options.max_seq_len = h.max_seq_len;
  batcher_options.packing = h.packing;
  batcher_options.pad_id = ByteTokenizer::kPadId;
  Batcher batcher(batcher_options, [&dataset] { return dataset->Next(); });

  const Clock::time_point start = Clock::now();
  Clock::time_point window_start = start;
  double window_loss = 0;
  int64_t window_steps = 0;
  int64_t window_tokens = 0;
  for (int64_t step = 1; step <= max_steps; ++step) {
    std::vector<Batch> micro_batches;
    for (int64_t k = 0; k < h.gradient_accumulation_steps; ++k) {
      ASSIGN_OR_RETURN(Batch batch, batcher.Next());
      micro_batches.push_back(std::move(batch));
    }
    ASSIGN_OR_RETURN(StepResult result, trainer->Step(micro_batches));
    window_loss += result.loss;
    window_tokens += result.input_tokens;
    ++window_steps;
    if (step % h.logging_steps == 0 || step == max_steps) {
      const Clock::time_point now = Clock::now();
      const double window_s = Seconds(window_start, now);
      StepMetrics m;
      m.step = result.step;
      m.loss = window_loss / static_cast<double>(window_steps);
      m.learning_rate = result.learning_rate;
      m.grad_norm = result.grad_norm;
      m.tokens = window_tokens;
      m.tokens_per_second = window_s > 0 ? static_cast<double>(window_tokens) / window_s : 0.0;
      m.peak_memory_bytes = PeakMemoryBytes(device);
      m.elapsed_s = Seconds(start, now);
      RETURN_IF_ERROR(metrics->Write(m));
      window_loss = 0;
      window_steps = 0;
      window_tokens = 0;
      window_start = now;
    }
    if (h.save_steps > 0 && step % h.save_steps == 0 && step != max_steps) {
      const std::string dir = JoinPath(job.output_dir, absl::StrCat("checkpoint-", step));
      RETURN_IF_ERROR(WriteCheckpoint(*trainer, dir, checkpoint_options));
      Info(info, absl::StrCat("saved ", dir));
      window_start = Clock::now();  // saving time is not training throughput
    }
  }
  const std::string final_dir = JoinPath(job.output_dir, "final");
  RETURN_IF_ERROR(WriteCheckpoint(*trainer, final_dir, checkpoint_options));
  Info(info, absl::StrFormat("trained %d steps in %.1f s; final model in %s", max_steps,
                             Seconds(start, Clock::now()), final_dir));
  return absl::OkStatus();
}

}  // namespace foak
