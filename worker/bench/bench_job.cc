#include "worker/bench/bench_job.h"

#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "kernels/registry.h"
#include "worker/bench/max_batch_search.h"
#include "worker/data/batch.h"
#include "worker/lora/lora.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/quant/nf4_linears.h"
#include "worker/train/activation_checkpointing.h"
#include "worker/train/bench_result.h"
#include "worker/train/data_parallel.h"
#include "worker/train/lora_training.h"
#include "worker/train/memory_stats.h"
#include "worker/train/precision.h"
#include "worker/train/train_job.h"
#include "worker/train/trainer.h"

namespace foak {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Steps a max-batch trial trains: the first allocates what the optimizer
// keeps, the second shows the steady-state peak.
constexpr int64_t kTrialSteps = 2;

void Print(std::FILE* f, const std::string& line) {
  if (f == nullptr) return;
  std::fprintf(f, "%s\n", line.c_str());
  std::fflush(f);
}


// B rows of T uniform random token ids; labels are the inputs (the loss
// shifts them), positions 0..T-1 in every row.
Batch RandomBatch(int64_t B, int64_t T, int64_t vocab_size, uint64_t seed) {
  Batch batch;
  batch.B = B;
  batch.T = T;
  batch.num_tokens = B * T;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> token(0, vocab_size - 1);
  batch.input_ids.resize(static_cast<size_t>(B * T));
  batch.position_ids.resize(static_cast<size_t>(B * T));
  for (int64_t i = 0; i < B * T; ++i) {
    batch.input_ids[i] = token(rng);
    batch.position_ids[i] = i % T;
  }
  batch.labels = batch.input_ids;
  return batch;
}

// The model of one kernel set, ready to train: random weights, adapters,
// activation checkpointing, the job's precision and optimizer.
absl::StatusOr<std::unique_ptr<Trainer>> BuildTrainer(const JobConfig& job,
                                                      const ModelConfig& config,
                                                      const KernelSet& kernels,
                                                      const torch::Device& device,
                                                      int64_t max_steps, Collectives* comm) {
  const Hyperparameters& h = job.hyperparameters;
  std::optional<LlamaForCausalLM> model;
  try {
    torch::manual_seed(static_cast<uint64_t>(h.seed));
    ModelInit init;
    // As LoadModel in train_job.cc: pure bf16 is built in bf16; bf16-mixed and
    // fp32 in fp32 (bf16-mixed takes its fp32 masters before the cast).
    init.options = torch::TensorOptions().device(device).dtype(
        h.precision == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat);
    init.random = true;
    init.kernels = kernels;
    if (job.Quantized()) {
      // qlora: each decoder projection goes into NF4 as soon as it is drawn,
      // so an 8B or 70B base is never whole in bf16 on the device.
      Nf4Options nf4;
      nf4.double_quant = job.quantization.double_quant;
      init.on_decoder_linear = QuantizeOnCreateHook(nf4);
    }
    model.emplace(config, init);
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, "building the model");
  }
  if (job.UsesLora()) {
    RETURN_IF_ERROR(PrepareLoraModel(*model, job, std::nullopt).status());
  }
  if (h.gradient_checkpointing) SetActivationCheckpointing(*model, true);
  TrainerOptions options = MakeTrainerOptions(job, max_steps);
  options.keep_trainable_fp32 = job.UsesLora();
  options.collectives = comm;
  return Trainer::Create(*model, options, device);
}

// The measured part of a row, on a trainer that is ready.
struct Timing {
  double tokens_per_second = 0;
  double ms_per_step = 0;
  int64_t peak_allocated_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  double loss_first = 0;
  double loss_last = 0;
};

void Synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

absl::StatusOr<Timing> TimeSteps(Trainer& trainer, const Batch& batch, int64_t warmup,
                                 int64_t steps, const torch::Device& device) {
  Timing t;
  const std::vector<Batch> micro_batches = {batch};
  for (int64_t i = 0; i < warmup; ++i) {
    ASSIGN_OR_RETURN(StepResult r, trainer.Step(micro_batches));
    if (i == 0) t.loss_first = r.loss;
  }
  Synchronize(device);
  const Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    ASSIGN_OR_RETURN(StepResult r, trainer.Step(micro_batches));
    if (warmup == 0 && i == 0) t.loss_first = r.loss;
    t.loss_last = r.loss;
  }
  Synchronize(device);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Every rank trains its own batch: the job's tokens are world_size times as many.
  t.tokens_per_second =
      static_cast<double>(batch.B * batch.T * steps * trainer.world_size()) / seconds;
  t.ms_per_step = 1e3 * seconds / static_cast<double>(steps);
  t.peak_allocated_bytes = PeakMemoryBytes(device);
  t.peak_reserved_bytes = PeakReservedBytes(device);
  return t;
}

void SetOutcome(const absl::Status& status, BenchResult* row) {
  if (status.ok()) {
    row->status = "ok";
  } else {
    row->status = absl::IsResourceExhausted(status) ? "out_of_memory" : "error";
    row->error = std::string(status.message());
  }
}

void SetTiming(const Timing& t, BenchResult* row) {
  row->tokens_per_second = t.tokens_per_second;
  row->ms_per_step = t.ms_per_step;
  row->peak_allocated_bytes = t.peak_allocated_bytes;
  row->peak_reserved_bytes = t.peak_reserved_bytes;
  row->loss_first = t.loss_first;
  row->loss_last = t.loss_last;
}

std::string RowLine(const BenchResult& r) {
  std::string line = absl::StrFormat("bench %d/%d: %s %s %s %dx%d%s: ", r.index + 1, r.total,
                                     r.model, r.method, r.kernels, r.batch, r.seq,
                                     r.max_batch ? " (largest batch)" : "");
  if (r.status != "ok") return absl::StrCat(line, r.status, ": ", r.error);
  absl::StrAppendFormat(&line, "%.0f tokens/s", r.tokens_per_second);
  if (r.pct_change.has_value()) absl::StrAppendFormat(&line, " (%+.1f%%)", *r.pct_change);
  absl::StrAppendFormat(&line, ", %.1f ms/step, peak %.2f GiB allocated, %.2f GiB reserved, "
                               "loss %.4f -> %.4f",
                        r.ms_per_step, r.peak_allocated_bytes / kGiB,
                        r.peak_reserved_bytes / kGiB, r.loss_first, r.loss_last);
  return line;
}

class BenchRun {
 public:
  BenchRun(const JobConfig& job, ModelConfig config, const RankContext& ranks, std::FILE* echo,
           std::FILE* info, TrainObserver* observer)
      : job_(job),
        bench_(job.bench),
        config_(std::move(config)),
        device_(ranks.device),
        comm_(ranks.collectives()),
        rank_(ranks.env.rank),
        world_(ranks.env.world_size),
        echo_(rank_ == 0 ? echo : nullptr),
        info_(rank_ == 0 ? info : nullptr),
        observer_(rank_ == 0 ? observer : nullptr) {}

  absl::Status Run() {
    if (world_ > 1 && bench_.find_max_batch) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bench.find_max_batch with ", world_, " ranks: the search runs out of memory on "
          "purpose, which one rank cannot recover from while the others wait in a collective; "
          "search on one GPU (the largest batch per GPU is the same) and give it as batch_sizes"));
    }
    if (rank_ == 0) RETURN_IF_ERROR(MakeDirs(job_.output_dir));
    const int64_t total = bench_.PlannedRows();
    Print(info_, absl::StrFormat(
                     "foak-worker: benchmark of %s (%s, %s) on %s: %d rows (%d kernel sets, "
                     "batches %s, sequences %s), %d warm-up + %d timed steps each%s%s",
                     job_.model, job_.method, PrecisionName(job_.hyperparameters.precision),
                     world_ > 1 ? absl::StrCat(world_, " ranks, rank 0 on ", device_.str())
                                : device_.str(),
                     total, bench_.kernel_sets.size(),
                     absl::StrJoin(bench_.batch_sizes, ","), absl::StrJoin(bench_.seq_lens, ","),
                     bench_.warmup_steps, bench_.steps,
                     job_.hyperparameters.gradient_checkpointing ? ", activation checkpointing"
                                                                 : "",
                     bench_.find_max_batch ? ", plus the largest batch per kernel set" : ""));
    if (observer_ != nullptr) observer_->OnStart(total, 0, device_.str());
    for (int64_t seq : bench_.seq_lens) {
      for (int64_t batch : bench_.batch_sizes) {
        std::optional<double> baseline;
        for (size_t k = 0; k < bench_.kernel_sets.size(); ++k) {
          BenchResult row = NewRow(k, batch, seq, false);
          TimeFreshRow(&row);
          if (world_ > 1 && row.status != "ok") {
            // A rank that failed a step left the others inside a collective:
            // the ranks are out of step, so the job ends here.
            return absl::InternalError(absl::StrCat(
                "benchmark row ", row.kernels, " ", batch, "x", seq, " on rank ", rank_, ": ",
                row.status, ": ", row.error, " (with several ranks a failed row ends the job)"));
          }
          Compare(k == 0, &baseline, &row);
          RETURN_IF_ERROR(Emit(std::move(row)));
        }
      }
    }
    if (bench_.find_max_batch) {
      for (int64_t seq : bench_.seq_lens) {
        std::optional<double> baseline;
        for (size_t k = 0; k < bench_.kernel_sets.size(); ++k) {
          BenchResult row = NewRow(k, 0, seq, true);
          SearchAndTime(&row);
          Compare(k == 0, &baseline, &row);
          RETURN_IF_ERROR(Emit(std::move(row)));
        }
      }
    }
    int failed = 0;
    std::string first_error;
    for (const BenchResult& r : rows_) {
      if (r.status != "error") continue;
      if (failed++ == 0) first_error = absl::StrCat(r.kernels, " ", r.batch, "x", r.seq, ": ", r.error);
    }
    if (failed > 0) {
      return absl::InternalError(absl::StrCat(failed, " of ", rows_.size(),
                                              " benchmark rows failed; the first: ", first_error));
    }
    Print(info_, absl::StrCat("foak-worker: benchmark done; rows in ",
                              JoinPath(job_.output_dir, "bench.jsonl")));
    if (comm_ != nullptr) RETURN_IF_ERROR(comm_->Barrier());
    return absl::OkStatus();
  }

 private:
  BenchResult NewRow(size_t kernel_index, int64_t batch, int64_t seq, bool max_batch) const {
    BenchResult row;
    row.index = static_cast<int32_t>(rows_.size());
    row.total = static_cast<int32_t>(bench_.PlannedRows());
    row.model = BaseName(job_.model);
    row.method = job_.method;
    row.kernels = KernelSetLabel(bench_.kernel_sets[kernel_index]);
    row.batch = batch;
    row.seq = seq;
    row.precision = PrecisionName(job_.hyperparameters.precision);
    row.activation_checkpointing = job_.hyperparameters.gradient_checkpointing;
    row.warmup_steps = bench_.warmup_steps;
    row.steps = bench_.steps;
    row.max_batch = max_batch;
    row.device = device_.str();
    row.gpus = device_.is_cuda() ? world_ : 0;
    kernel_index_ = kernel_index;
    return row;
  }

  // The first kernel set's row of a shape is the others' baseline.
  static void Compare(bool first, std::optional<double>* baseline, BenchResult* row) {
    if (first) {
      if (row->status == "ok") *baseline = row->tokens_per_second;
      return;
    }
    if (row->status == "ok" && baseline->has_value() && **baseline > 0) {
      row->pct_change = 100.0 * (row->tokens_per_second / **baseline - 1.0);
    }
  }

  const KernelSet& kernels() const { return bench_.kernel_sets[kernel_index_]; }
  int64_t StepsPerRow() const { return bench_.warmup_steps + bench_.steps; }
  Batch MakeBatch(int64_t batch, int64_t seq) const {
    // Each rank its own tokens, as each would read its own data.
    return RandomBatch(batch, seq, config_.vocab_size,
                       static_cast<uint64_t>(job_.hyperparameters.seed) + 1 +
                           7919 * static_cast<uint64_t>(rank_));
  }

  void TimeFreshRow(BenchResult* row) {
    absl::Status status = [&]() -> absl::Status {
      ReleaseCachedMemory(device_);
      ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                       BuildTrainer(job_, config_, kernels(), device_, StepsPerRow(), comm_));
      const Batch batch = MakeBatch(row->batch, row->seq);
      ResetPeakMemory(device_);
      ASSIGN_OR_RETURN(Timing t, TimeSteps(*trainer, batch, bench_.warmup_steps, bench_.steps,
                                           device_));
      SetTiming(t, row);
      return absl::OkStatus();
    }();
    ReleaseCachedMemory(device_);
    SetOutcome(status, row);
  }

  // Searches the largest batch on one model, then times it on that model
  // (stepping down once should the timed run not fit after all).
  void SearchAndTime(BenchResult* row) {
    absl::Status status = [&]() -> absl::Status {
      ReleaseCachedMemory(device_);
      // The schedule never ends: trials and the timed row share the trainer.
      ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                       BuildTrainer(job_, config_, kernels(), device_, 1 << 30, comm_));
      int64_t start = 1;
      for (int64_t b : bench_.batch_sizes) start = std::max(start, b);
      auto fits = [&](int64_t b) -> absl::StatusOr<bool> {
        const Batch batch = MakeBatch(b, row->seq);
        for (int64_t i = 0; i < kTrialSteps; ++i) {
          absl::StatusOr<StepResult> r = trainer->Step({batch});
          if (absl::IsResourceExhausted(r.status())) {
            ReleaseCachedMemory(device_);
            Print(info_, absl::StrFormat("foak-worker: %s %dx%d: out of memory",
                                         row->kernels, b, row->seq));
            return false;
          }
          if (!r.ok()) return r.status();
        }
        Print(info_, absl::StrFormat("foak-worker: %s %dx%d: fits", row->kernels, b, row->seq));
        return true;
      };
      ASSIGN_OR_RETURN(MaxBatchSearch search, FindMaxBatch(start, bench_.max_batch_limit, fits));
      if (search.largest == 0) {
        return absl::ResourceExhaustedError(
            absl::StrCat("not even one row of ", row->seq, " tokens fits"));
      }
      int64_t b = search.largest;
      for (int attempt = 0; attempt < 2; ++attempt) {
        row->batch = b;
        const Batch batch = MakeBatch(b, row->seq);
        ReleaseCachedMemory(device_);
        ResetPeakMemory(device_);
        absl::StatusOr<Timing> t =
            TimeSteps(*trainer, batch, bench_.warmup_steps, bench_.steps, device_);
        if (t.ok()) {
          SetTiming(*t, row);
          return absl::OkStatus();
        }
        if (!absl::IsResourceExhausted(t.status()) || attempt == 1) return t.status();
        b = std::max<int64_t>(1, b - std::max<int64_t>(1, b / 8));
      }
      return absl::OkStatus();
    }();
    ReleaseCachedMemory(device_);
    SetOutcome(status, row);
  }

  // Rank 0 keeps the record; the other ranks only keep count.
  absl::Status Emit(BenchResult row) {
    Print(echo_, RowLine(row));
    rows_.push_back(row);
    if (rank_ != 0) return absl::OkStatus();
    std::string lines;
    for (const BenchResult& r : rows_) absl::StrAppend(&lines, BenchResultToJson(r), "\n");
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(job_.output_dir, "bench.jsonl"), lines));
    if (observer_ != nullptr) observer_->OnBenchResult(rows_.back());
    return absl::OkStatus();
  }

  const JobConfig& job_;
  const BenchConfig& bench_;
  const ModelConfig config_;
  const torch::Device device_;
  Collectives* comm_;  // null with one rank
  const int rank_;
  const int world_;
  std::FILE* echo_;
  std::FILE* info_;
  TrainObserver* observer_;
  std::vector<BenchResult> rows_;
  mutable size_t kernel_index_ = 0;  // the kernel set of the row being run
};

}  // namespace

absl::Status RunBenchJob(const JobConfig& job, std::FILE* echo, std::FILE* info,
                         TrainObserver* observer) {
  if (!job.bench.enabled) {
    return absl::InvalidArgumentError("RunBenchJob needs a job with a \"bench\" object");
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(job.model));
  // Data parallel (data_parallel.h): every rank times the same rows on its
  // own batches; rank 0 records them.
  ASSIGN_OR_RETURN(RankContext ranks, JoinRanks(job));
  BenchRun run(job, std::move(config), ranks, echo, info, observer);
  return run.Run();
}

}  // namespace foak
