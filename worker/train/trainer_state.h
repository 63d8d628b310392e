// TrainerState: everything besides tensors that a checkpoint must hold for a
// resumed run to continue EXACTLY where the interrupted one stopped; written as
// checkpoint-<step>/trainer_state.json (the name transformers' Trainer uses).
// No torch here: RNG states arrive as opaque bytes (base64 in the JSON).
//
//   global_step             optimizer steps completed; also the LR scheduler's
//                           position (the schedule is a pure function of the
//                           step, so its options plus the step ARE its state)
//   micro_batches_consumed  the data position: a resumed run rebuilds the data
//                           stream from the seed and skips this many
//   epoch                   fractional, micro_batches_consumed / per epoch
//   rng                     CPU generator state, and one per CUDA device
//   log_window              the partly filled logging window (loss sum, steps,
//                           tokens), so logging_steps > 1 averages the same
//   examples_consumed       the same position in examples (Batcher), so the
//                           dataset can Skip without re-tokenizing (-1: unknown)
//   fingerprint             what the run was: method, hyperparameters, resolved
//                           max_steps, dataset file hash, the dataset options
//                           that shape the example stream, the LoRA settings,
//                           the base's quantization (qlora), model config hash;
//                           CheckResumeCompatible refuses a different job
//   log_history             every metrics line so far (as transformers keeps)
//
// The file is written last inside the temporary folder, so its presence plus
// "complete": true marks a finished checkpoint.
#ifndef FOAK_WORKER_TRAIN_TRAINER_STATE_H_
#define FOAK_WORKER_TRAIN_TRAINER_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/lr_schedule.h"

namespace foak {

// Identifies the training trajectory; two runs with equal fingerprints see the
// same data in the same order with the same math.
struct RunFingerprint {
  std::string method;               // "full" | "lora" | "qlora"
  std::string hyperparameters_json;  // HyperparametersToJson
  int64_t max_steps = 0;            // resolved
  std::string dataset_hash;         // FingerprintFile of dataset.train
  std::string model_config_hash;    // FingerprintBytes of the normalised config.json
  std::string dataset_options_json = "{}";  // DatasetOptionsToJson (job.h)
  std::string lora_json = "{}";             // LoraToJson: {} for method full
  // QuantizationToJson: {} unless qlora (the NF4 codes the adapter trains
  // against depend on it).
  std::string quantization_json = "{}";
};

struct LogWindow {
  double loss_sum = 0;
  int64_t steps = 0;
  int64_t tokens = 0;
};

struct TrainerState {
  int64_t global_step = 0;
  int64_t micro_batches_consumed = 0;
  int64_t examples_consumed = -1;
  double epoch = 0;
  LrScheduleOptions lr_schedule;
  double last_learning_rate = 0;
  double last_loss = 0;
  double elapsed_s = 0;                 // training time before this checkpoint
  std::string cpu_rng_state;            // raw bytes
  std::vector<std::string> cuda_rng_states;  // raw bytes, one per device
  LogWindow log_window;
  RunFingerprint fingerprint;
  std::vector<std::string> log_history;  // metrics JSON lines, oldest first
};

std::string TrainerStateToJson(const TrainerState& state);
// `source` names the file in errors.
absl::StatusOr<TrainerState> ParseTrainerState(const std::string& json_text,
                                               const std::string& source);

// OK when `saved` (from a checkpoint) and `current` (this job) describe the same
// run. Otherwise FAILED_PRECONDITION listing every difference (old -> new) and
// how to proceed anyway (resume_ignore_mismatch). logging_steps, save_steps,
// save_total_limit, max_shard_bytes, eval_steps and eval_batch_size may
// change freely (evaluation does not touch the training trajectory).
absl::Status CheckResumeCompatible(const RunFingerprint& saved, const RunFingerprint& current,
                                   const std::string& checkpoint_dir);

// "fnv1a64:<16 hex>:<size>" of a file's bytes, streamed (datasets can be large).
absl::StatusOr<std::string> FingerprintFile(const std::string& path);
// The same for bytes in memory.
std::string FingerprintBytes(const std::string& bytes);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_TRAINER_STATE_H_
