// foak-worker: the worker binary. Three commands:
//   train       run a fine-tuning job file (worker/train/train_job.h)
//   init-model  write a randomly initialised model of a config.json in
//               Hugging Face format (the demo and tests need a model and there
//               are no downloads)
//   forward     run a model on given token ids and write the logits to a
//               safetensors file, to compare with transformers on the GPU host
// Exit status: 0 success, 1 error ("foak-worker: <message>" on stderr, and no
// partial output: every file is written through a temp file and renamed),
// 2 bad usage (the usage text on stderr). `--help` prints the usage on stdout.
#include <torch/utils.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"
#include "worker/train/job.h"
#include "worker/train/train_job.h"
#include "worker/train/trainer.h"

namespace foak {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

constexpr char kMainUsage[] =
    "Usage: foak-worker <command> [options]\n"
    "\n"
    "Commands:\n"
    "  train       --job FILE [--resume latest|PATH]\n"
    "  init-model  --config CONFIG.json --out DIR [--seed N] [--dtype float32|bfloat16]\n"
    "  forward     --model DIR --input-ids IDS --out FILE.safetensors [--position-ids IDS]\n"
    "              [--dtype float32|bfloat16] [--device auto|cpu|cuda[:N]]\n"
    "\n"
    "Run 'foak-worker <command> --help' for the details of a command.\n";

constexpr char kTrainUsage[] =
    "Usage: foak-worker train --job FILE [--resume latest|PATH]\n"
    "\n"
    "Fine-tunes the model of a JSON job file (see examples/demo_job.json and\n"
    "worker/train/job.h for every field and its default). Metrics go to stdout and\n"
    "<output_dir>/metrics.jsonl (one JSON line per logged step); the trained model\n"
    "is written to <output_dir>/final in Hugging Face format.\n"
    "  --resume R   overrides the job's resume_from_checkpoint: latest (the newest\n"
    "               complete <output_dir>/checkpoint-<step>, or a fresh start when\n"
    "               there is none), PATH (that checkpoint folder) or none\n";

constexpr char kInitModelUsage[] =
    "Usage: foak-worker init-model --config CONFIG.json --out DIR [--seed N]\n"
    "                              [--dtype float32|bfloat16]\n"
    "\n"
    "Writes a randomly initialised model (transformers' init: normal(0,\n"
    "initializer_range) weights, unit norms) for a Hugging Face config.json into DIR\n"
    "as config.json + model.safetensors.\n"
    "  --seed N     torch seed for the initialisation (default 42)\n"
    "  --dtype T    dtype of the saved weights (default float32)\n";

constexpr char kForwardUsage[] =
    "Usage: foak-worker forward --model DIR --input-ids IDS --out FILE.safetensors\n"
    "                           [--position-ids IDS] [--dtype float32|bfloat16]\n"
    "                           [--device auto|cpu|cuda[:N]]\n"
    "\n"
    "Runs the model in DIR on the token ids and writes FILE.safetensors with\n"
    "\"logits\" F32 (B, T, V), \"input_ids\" I64 (B, T) and, when given,\n"
    "\"position_ids\" I64 (B, T).\n"
    "  --input-ids IDS     rows separated by ';', ids by ',': \"1,2,3;4,5,6\" is B=2, T=3\n"
    "  --position-ids IDS  same layout (default 0..T-1 per row)\n"
    "  --dtype T           parameter dtype for the forward pass (default float32)\n"
    "  --device D          default auto (CUDA when available)\n";


struct Flags {
  std::map<std::string, std::string> values;
  bool help = false;

  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};

// Parses "--name value" and "--name=value" pairs of the names in `known`.
absl::StatusOr<Flags> ParseFlags(int argc, char** argv, int first,
                                 const std::set<std::string>& known) {
  Flags flags;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = argv[++i];
    }
    if (known.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
    }
    if (flags.values.count(name) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    }
    flags.values[name] = value;
  }
  return flags;
}

absl::Status Require(const Flags& flags, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (flags.Get(name).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseDtype(const Flags& flags) {
  std::string dtype = flags.Get("dtype", "float32");
  if (dtype != "float32" && dtype != "bfloat16") {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype ", dtype, ": expected float32 or bfloat16"));
  }
  return dtype;
}

// "1,2,3;4,5,6" -> rows. Rows must have the same, non-zero length.
absl::StatusOr<std::vector<std::vector<int64_t>>> ParseIdRows(const std::string& flag,
                                                              const std::string& text) {
  std::vector<std::vector<int64_t>> rows;
  for (absl::string_view row_text : absl::StrSplit(text, ';')) {
    std::vector<int64_t> row;
    for (absl::string_view item : absl::StrSplit(row_text, ',')) {
      int64_t id;
      if (!absl::SimpleAtoi(item, &id)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", flag, ": '", std::string(item), "' is not an integer; expected ids like "
            "1,2,3;4,5,6"));
      }
      row.push_back(id);
    }
    if (!rows.empty() && row.size() != rows[0].size()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": row ", rows.size(), " has ",
                                                     row.size(), " ids but row 0 has ",
                                                     rows[0].size(), "; rows must be equally long"));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::Status RunTrain(const Flags& flags) {
  ASSIGN_OR_RETURN(JobConfig job, LoadJobConfig(flags.Get("job")));
  if (flags.values.count("resume") != 0) {
    job.resume_from_checkpoint = ParseResumeFlag(flags.Get("resume"));
  }
  return RunTrainJob(job, stdout, stderr);
}

absl::Status RunInitModel(const Flags& flags) {
  const std::string config_path = flags.Get("config");
  ASSIGN_OR_RETURN(std::string dtype, ParseDtype(flags));
  int64_t seed = 42;
  if (std::string s = flags.Get("seed"); !s.empty() && (!absl::SimpleAtoi(s, &seed) || seed < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("--seed ", s, ": expected an integer >= 0"));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text, config_path));
  try {
    torch::manual_seed(static_cast<uint64_t>(seed));
    LlamaForCausalLM model(config);
    SaveOptions options;
    options.dtype = dtype;
    return SaveModel(model, flags.Get("out"), options);
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, "init-model");
  }
}

absl::Status RunForward(const Flags& flags) {
  const std::string model_dir = flags.Get("model");
  ASSIGN_OR_RETURN(std::string dtype, ParseDtype(flags));
  ASSIGN_OR_RETURN(auto ids, ParseIdRows("input-ids", flags.Get("input-ids")));
  const int64_t B = static_cast<int64_t>(ids.size());
  const int64_t T = static_cast<int64_t>(ids[0].size());
  std::vector<std::vector<int64_t>> positions;
  if (std::string p = flags.Get("position-ids"); !p.empty()) {
    ASSIGN_OR_RETURN(positions, ParseIdRows("position-ids", p));
    if (static_cast<int64_t>(positions.size()) != B ||
        static_cast<int64_t>(positions[0].size()) != T) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--position-ids is ", positions.size(), "x", positions[0].size(),
          " but --input-ids is ", B, "x", T, "; they must have the same shape"));
    }
  }
  ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(flags.Get("device", "auto")));
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  std::vector<int64_t> flat_ids, flat_positions;
  for (const auto& row : ids) {
    for (int64_t id : row) {
      if (id < 0 || id >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("--input-ids: id ", id,
                                                       " is outside the vocabulary [0, ",
                                                       config.vocab_size, ") of ", model_dir));
      }
      flat_ids.push_back(id);
    }
  }
  for (const auto& row : positions) flat_positions.insert(flat_positions.end(), row.begin(), row.end());

  torch::Tensor logits;
  try {
    ModelInit init;
    init.options = torch::TensorOptions().device(device).dtype(
        dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat);
    init.random = false;
    LlamaForCausalLM model(config, init);
    RETURN_IF_ERROR(LoadWeights(model, model_dir));
    model->eval();
    torch::NoGradGuard no_grad;
    torch::Tensor input = torch::tensor(flat_ids, torch::kLong).reshape({B, T}).to(device);
    torch::Tensor pos;
    if (!flat_positions.empty()) {
      pos = torch::tensor(flat_positions, torch::kLong).reshape({B, T}).to(device);
    }
    logits = model->forward(input, pos).to(torch::kCPU, torch::kFloat).contiguous();  // (B, T, V)
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("forward pass of ", model_dir));
  }
  std::vector<TensorView> tensors;
  tensors.push_back({"logits", DType::kF32, {B, T, config.vocab_size}, logits.data_ptr(),
                     static_cast<uint64_t>(logits.numel()) * sizeof(float)});
  tensors.push_back({"input_ids", DType::kI64, {B, T}, flat_ids.data(),
                     flat_ids.size() * sizeof(int64_t)});
  if (!flat_positions.empty()) {
    tensors.push_back({"position_ids", DType::kI64, {B, T}, flat_positions.data(),
                       flat_positions.size() * sizeof(int64_t)});
  }
  return WriteSafetensors(flags.Get("out"), tensors);
}

struct Command {
  const char* name;
  const char* usage;
  std::set<std::string> flags;
  std::vector<std::string> required;
  absl::Status (*run)(const Flags&);
};

int Main(int argc, char** argv) {
  const std::vector<Command> commands = {
      {"train", kTrainUsage, {"job", "resume"}, {"job"}, RunTrain},
      {"init-model", kInitModelUsage, {"config", "out", "seed", "dtype"}, {"config", "out"},
       RunInitModel},
      {"forward", kForwardUsage, {"model", "input-ids", "position-ids", "out", "dtype", "device"},
       {"model", "input-ids", "out"}, RunForward},
  };
  if (argc < 2) {
    std::fputs(kMainUsage, stderr);
    return kExitUsage;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    std::fputs(kMainUsage, stdout);
    return kExitOk;
  }
  for (const Command& command : commands) {
    if (name != command.name) continue;
    absl::StatusOr<Flags> flags = ParseFlags(argc, argv, 2, command.flags);
    absl::Status usage = flags.ok() ? Require(*flags, command.required) : flags.status();
    if (flags.ok() && flags->help) {
      std::fputs(command.usage, stdout);
      return kExitOk;
    }
    if (!usage.ok()) {
      std::fprintf(stderr, "foak-worker %s: %s\n\n%s", command.name,
                   std::string(usage.message()).c_str(), command.usage);
      return kExitUsage;
    }
    absl::Status status = command.run(*flags);
    if (!status.ok()) {
      std::fprintf(stderr, "foak-worker: %s\n", std::string(status.message()).c_str());
      return kExitError;
    }
    return kExitOk;
  }
  std::fprintf(stderr, "foak-worker: unknown command '%s'\n\n%s", name.c_str(), kMainUsage);
  return kExitUsage;
}

}  // namespace
}  // namespace foak

int main(int argc, char** argv) {
  try {
    return foak::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "foak-worker: internal error: %s\n", e.what());
    return 1;
  }
}
