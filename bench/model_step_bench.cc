// foak_model_bench: tokens/s, TFLOP/s and peak memory of one training step
// (forward + CausalLmLoss + backward, no optimizer) of a randomly initialised
// Llama-family model, on CUDA when there is a device and on CPU otherwise.
//
//   foak_model_bench --config bench/models/llama-3.2-1b --batch 4 --seq 2048
//       --dtype bf16 --steps 10 --warmup 3 [--json OUT] [--seed S] [--device cpu|cuda]
//
// --config takes a config.json file or a model folder holding one.
//
// Napkin math (printed with the results). With N_mm the parameters that take
// part in matrix multiplies (q/k/v/o and gate/up/down of every layer plus the
// V x H head, counted once even when tied to the embedding; the embedding
// lookup itself is no matmul), L layers, T the sequence length and
// d_attn = heads * head_dim:
//   FLOPs per token = 6 * N_mm                 (2 forward, 4 backward per weight)
//                   + 6 * L * T * d_attn       (QK^T and PV: 4 T d_attn per token
//                                               forward, halved by the causal mask,
//                                               x3 for forward + backward)
// For the Llama-3.2-1B shape at T = 2048 this is 7.42 + 0.40 = 7.82 GFLOP/token,
// the figure behind shared/TARGETS.md's ~100k tokens/s ceiling at 790 TFLOP/s
// (the measured bf16 dense matmul peak of H100 and H200). Norms, RoPE, SwiGLU
// and the softmax are memory-bound and not counted.
//
// Timing: the clock starts after `warmup` full steps and a device
// synchronisation, and stops after the last step and another one; nothing in
// between waits for the device (losses stay on the device until the end).
// Gradients are set to none before each step, as an optimizer's zero_grad
// would, so the allocator sees the same pattern as in training.
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <torch/version.h>

#ifdef FOAK_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/model/llama.h"
#include "worker/train/activation_checkpointing.h"
#include "worker/model/model_config.h"

namespace foak {
namespace {

constexpr double kPeakTflops = 790.0;  // shared/GPU_HOST.md: bf16 8192^3 matmul, H100/H200
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct BenchOptions {
  std::string config;
  int64_t batch = 4;
  int64_t seq = 2048;
  std::string dtype = "bf16";  // bf16 | fp32
  int64_t steps = 10;
  int64_t warmup = 3;
  std::string json_out;
  std::string device = "auto";  // auto | cuda | cpu
  std::string kernels;          // comma-separated FOAK kernel names (kernels/registry.h)
  bool checkpointing = false;   // activation checkpointing (worker/train/activation_checkpointing.h)
  uint64_t seed = 0;
};

const char kUsage[] =
    "usage: foak_model_bench --config FILE|DIR [--batch B] [--seq T] [--dtype bf16|fp32]\n"
    "                        [--steps N] [--warmup W] [--json OUT] [--seed S]\n"
    "                        [--device auto|cuda|cpu] [--kernels foak,fused_linear_cross_entropy]\n"
    "                        [--activation-checkpointing on|off]\n";

absl::StatusOr<int64_t> ParsePositive(const std::string& flag, const std::string& value,
                                      int64_t min_value) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < min_value) {
    return absl::InvalidArgumentError(absl::StrCat("flag ", flag, " = '", value,
                                                   "' must be an integer >= ", min_value));
  }
  return v;
}

absl::StatusOr<BenchOptions> ParseArgs(int argc, char** argv) {
  BenchOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    const size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag == "--help" || flag == "-h") {
      return absl::InvalidArgumentError("help requested");
    } else {
      static const char* const kFlags[] = {"--config", "--batch", "--seq",  "--dtype", "--steps",
                                           "--warmup", "--json",  "--seed", "--device",
                                           "--kernels", "--activation-checkpointing"};
      bool known = false;
      for (const char* f : kFlags) known = known || flag == f;
      if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown flag '", flag, "'"));
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("flag ", flag, " needs a value"));
      }
      value = argv[++i];
    }
    if (flag == "--config") {
      o.config = value;
    } else if (flag == "--batch") {
      ASSIGN_OR_RETURN(o.batch, ParsePositive(flag, value, 1));
    } else if (flag == "--seq") {
      ASSIGN_OR_RETURN(o.seq, ParsePositive(flag, value, 2));
    } else if (flag == "--steps") {
      ASSIGN_OR_RETURN(o.steps, ParsePositive(flag, value, 1));
    } else if (flag == "--warmup") {
      ASSIGN_OR_RETURN(o.warmup, ParsePositive(flag, value, 0));
    } else if (flag == "--seed") {
      ASSIGN_OR_RETURN(int64_t seed, ParsePositive(flag, value, 0));
      o.seed = static_cast<uint64_t>(seed);
    } else if (flag == "--dtype") {
      if (value != "bf16" && value != "fp32") {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --dtype = '", value, "' must be bf16 or fp32"));
      }
      o.dtype = value;
    } else if (flag == "--device") {
      if (value != "auto" && value != "cuda" && value != "cpu") {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --device = '", value, "' must be auto, cuda or cpu"));
      }
      o.device = value;
    } else if (flag == "--json") {
      o.json_out = value;
    } else if (flag == "--kernels") {
      o.kernels = value;
    } else if (flag == "--activation-checkpointing") {
      if (value != "on" && value != "off") {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --activation-checkpointing = '", value, "' must be on or off"));
      }
      o.checkpointing = value == "on";
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", flag, "'"));
    }
  }
  if (o.config.empty()) return absl::InvalidArgumentError("flag --config is required");
  return o;
}

// A config.json file, or a folder that holds one.
absl::StatusOr<ModelConfig> ReadConfig(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return LoadModelConfig(path);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseModelConfig(text, path);
}

// Parameters that take part in matmuls, from the architecture (see the top).
int64_t MatmulParams(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  const int64_t per_layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
  return c.num_hidden_layers * per_layer + c.vocab_size * h;
}

double FlopsPerToken(const ModelConfig& c, int64_t seq) {
  const double d_attn = static_cast<double>(c.num_attention_heads * c.head_dim);
  return 6.0 * static_cast<double>(MatmulParams(c)) +
         6.0 * static_cast<double>(c.num_hidden_layers) * static_cast<double>(seq) * d_attn;
}

// kB value of a /proc/self/status line ("VmHWM:  123 kB"), or -1.
int64_t ProcStatusKb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      int64_t kb = -1;
      std::string digits;
      for (char ch : line.substr(key.size() + 1)) {
        if (ch >= '0' && ch <= '9') digits.push_back(ch);
      }
      if (absl::SimpleAtoi(digits, &kb)) return kb;
    }
  }
  return -1;
}

struct MemoryStats {
  double peak_allocated_gib = -1;  // CUDA caching allocator, since the reset
  double peak_reserved_gib = -1;
  double peak_rss_gib = -1;  // process high-water mark (CPU runs)
};

void ResetPeakMemory(bool cuda) {
#ifdef FOAK_WITH_CUDA
  if (cuda) c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
  (void)cuda;
}

double CudaAllocatedGib(bool cuda) {
#ifdef FOAK_WITH_CUDA
  if (cuda) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    return static_cast<double>(stats.allocated_bytes[0].current) / kGiB;  // [0] = aggregate
  }
#endif
  (void)cuda;
  return -1;
}

MemoryStats ReadPeakMemory(bool cuda) {
  MemoryStats m;
#ifdef FOAK_WITH_CUDA
  if (cuda) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    m.peak_allocated_gib = static_cast<double>(stats.allocated_bytes[0].peak) / kGiB;
    m.peak_reserved_gib = static_cast<double>(stats.reserved_bytes[0].peak) / kGiB;
  }
#endif
  (void)cuda;
  const int64_t hwm_kb = ProcStatusKb("VmHWM");
  if (hwm_kb >= 0) m.peak_rss_gib = static_cast<double>(hwm_kb) * 1024.0 / kGiB;
  return m;
}

void Synchronize(bool cuda) {
  if (cuda) torch::cuda::synchronize();
}

absl::Status Run(const BenchOptions& o) {
  ASSIGN_OR_RETURN(ModelConfig config, ReadConfig(o.config));
  bool cuda = torch::cuda::is_available();
  if (o.device == "cuda" && !cuda) {
    return absl::FailedPreconditionError("--device cuda but torch::cuda::is_available() is false");
  }
  if (o.device == "cpu") cuda = false;
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  const torch::Dtype dtype = o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat;

  const int64_t tokens_per_step = o.batch * o.seq;
  const int64_t mm_params = MatmulParams(config);
  const double flops_per_token = FlopsPerToken(config, o.seq);
  std::printf("config %s: %s, L=%lld H=%lld I=%lld heads=%lld kv=%lld head_dim=%lld V=%lld tied=%d\n",
              o.config.c_str(), config.model_type.c_str(),
              static_cast<long long>(config.num_hidden_layers),
              static_cast<long long>(config.hidden_size),
              static_cast<long long>(config.intermediate_size),
              static_cast<long long>(config.num_attention_heads),
              static_cast<long long>(config.num_key_value_heads),
              static_cast<long long>(config.head_dim), static_cast<long long>(config.vocab_size),
              config.tie_word_embeddings ? 1 : 0);
  std::printf("device %s, dtype %s (pure, parameters and activations), batch %lld x seq %lld\n",
              cuda ? "cuda:0" : "cpu", o.dtype.c_str(), static_cast<long long>(o.batch),
              static_cast<long long>(o.seq));
  std::fflush(stdout);

  const auto t_init0 = std::chrono::steady_clock::now();
  torch::manual_seed(o.seed);
  ModelInit init;  // random init straight on the device, in the benchmark dtype
  init.options = torch::TensorOptions().device(device).dtype(dtype);
  ASSIGN_OR_RETURN(init.kernels,
                   ParseKernelSet(o.kernels.empty()
                                      ? std::vector<std::string>{}
                                      : static_cast<std::vector<std::string>>(
                                            absl::StrSplit(o.kernels, ','))));
  std::printf("kernels: %s\n", KernelSetString(init.kernels).c_str());
  LlamaForCausalLM model(config, init);
  model->train();
  SetActivationCheckpointing(model, o.checkpointing);
  if (o.checkpointing) std::printf("activation checkpointing: on\n");
  std::vector<torch::Tensor> params = model->parameters();
  int64_t total_params = 0;
  for (const auto& p : params) total_params += p.numel();
  Synchronize(cuda);
  const double init_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_init0).count();
  const double weights_gib = CudaAllocatedGib(cuda);
  std::printf("model: %.2fM parameters, %.2fM in matmuls; built on the device in %.1f s\n",
              total_params / 1e6, mm_params / 1e6, init_s);
  if (cuda) std::printf("model: %.2f GiB allocated on the device\n", weights_gib);
  std::printf("napkin: %.4f GFLOP/token = 6 * %.2fM (matmul params) + 6*L*T*d_attn (causal attention)\n",
              flops_per_token / 1e9, mm_params / 1e6);
  std::fflush(stdout);

  torch::manual_seed(o.seed + 1);
  const torch::Tensor ids =
      torch::randint(0, config.vocab_size, {o.batch, o.seq}, torch::kLong).to(device);

  auto step = [&]() -> torch::Tensor {
    for (auto& p : params) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none)
    // The model's loss with the chosen kernels (the composite when none),
    // a mean over the tokens.
    CausalLmLossOptions loss_options;
    loss_options.normalizer = static_cast<double>(o.batch * (o.seq - 1));
    loss_options.num_targets = o.batch * (o.seq - 1);
    LossParts parts = model->Loss(ids, torch::Tensor(), ids, loss_options);
    parts.normalized.backward();
    return parts.normalized.detach();
  };

  ResetPeakMemory(cuda);
  std::vector<torch::Tensor> losses;
  const auto t_warm0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.warmup; ++i) losses.push_back(step());
  Synchronize(cuda);
  const double warmup_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_warm0).count();

  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.steps; ++i) losses.push_back(step());
  Synchronize(cuda);
  const double timed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const MemoryStats mem = ReadPeakMemory(cuda);
  const double ms_per_step = 1e3 * timed_s / static_cast<double>(o.steps);
  const double tokens_per_s = static_cast<double>(tokens_per_step * o.steps) / timed_s;
  const double tflops = tokens_per_s * flops_per_token / 1e12;
  const double pct_peak = 100.0 * tflops / kPeakTflops;
  const double loss_first = losses.front().item<double>();
  const double loss_last = losses.back().item<double>();
  bool finite = true;
  for (const auto& l : losses) finite = finite && std::isfinite(l.item<double>());

  std::printf("warm-up: %lld steps in %.2f s\n", static_cast<long long>(o.warmup), warmup_s);
  std::printf("timed:   %lld steps in %.3f s: %.1f ms/step, %.0f tokens/s\n",
              static_cast<long long>(o.steps), timed_s, ms_per_step, tokens_per_s);
  std::printf("compute: %.1f TFLOP/s achieved = %.1f%% of %.0f TFLOP/s peak\n", tflops, pct_peak,
              kPeakTflops);
  if (cuda) {
    std::printf("memory:  peak allocated %.2f GiB (weights %.2f GiB), peak reserved %.2f GiB\n",
                mem.peak_allocated_gib, weights_gib, mem.peak_reserved_gib);
  } else {
    std::printf("memory:  peak RSS %.2f GiB\n", mem.peak_rss_gib);
  }
  std::printf("loss:    first %.4f last %.4f (random data: ~ln(V) = %.4f)%s\n", loss_first, loss_last,
              std::log(static_cast<double>(config.vocab_size)), finite ? "" : "  NON-FINITE!");

  if (!o.json_out.empty()) {
    nlohmann::json j = {
        {"config", o.config},
        {"model_type", config.model_type},
        {"device", cuda ? "cuda" : "cpu"},
        {"dtype", o.dtype},
        {"kernels", KernelSetString(init.kernels)},
        {"activation_checkpointing", o.checkpointing},
        {"batch", o.batch},
        {"seq", o.seq},
        {"warmup", o.warmup},
        {"steps", o.steps},
        {"params", total_params},
        {"matmul_params", mm_params},
        {"flops_per_token", flops_per_token},
        {"init_s", init_s},
        {"ms_per_step", ms_per_step},
        {"tokens_per_s", tokens_per_s},
        {"tflops", tflops},
        {"pct_of_790_tflops", pct_peak},
        {"peak_allocated_gib", mem.peak_allocated_gib},
        {"peak_reserved_gib", mem.peak_reserved_gib},
        {"weights_gib", weights_gib},
        {"peak_rss_gib", mem.peak_rss_gib},
        {"loss_first", loss_first},
        {"loss_last", loss_last},
        {"finite", finite},
        {"torch_version", TORCH_VERSION},
    };
    RETURN_IF_ERROR(WriteFileAtomically(o.json_out, j.dump(2) + "\n"));
  }
  if (!finite) return absl::InternalError("non-finite loss in the benchmark steps");
  return absl::OkStatus();
}

}  // namespace
}  // namespace foak

int main(int argc, char** argv) {
  absl::StatusOr<foak::BenchOptions> options = foak::ParseArgs(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "foak_model_bench: %s\n%s", options.status().ToString().c_str(),
                 foak::kUsage);
    return 2;
  }
  try {
    absl::Status status = foak::Run(*options);
    if (!status.ok()) {
      std::fprintf(stderr, "foak_model_bench: %s\n", status.ToString().c_str());
      return 1;
    }
  } catch (const std::exception& e) {  // c10::Error (OOM, bad shapes) derives from it
    std::fprintf(stderr, "foak_model_bench: torch error: %s\n", e.what());
    return 1;
  }
  return 0;
}
