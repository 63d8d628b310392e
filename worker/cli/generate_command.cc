// `foak-worker generate`: text from a model folder (optionally with a LoRA
// adapter), to look at what a fine-tune learned.
//
// Prompt -> ids as training sees text: the folder's tokenizer (LoadTokenizer),
// BOS when its special().add_bos says so, never EOS (the model is to continue
// the text). With --chat, or for {"messages"} lines, the prompt is rendered
// with the chat template up to the assistant's content
// (ChatTemplate::RenderGenerationPrompt) and tokenized segment by segment as
// the data pipeline does (EncodeSegments), so a chat fine-tune sees at
// inference exactly the token layout it was trained on.
//
// Stop ids: the tokenizer's EOS, config.json's eos_token_id (what
// transformers' generate stops at) and, for chats, the special tokens of the
// template's assistant suffix (its end-of-turn token: <|eot_id|>, <|im_end|>,
// ...). Every prompt is read, tokenized and checked against the vocabulary
// before the model is loaded, so a bad --prompts line fails in a second with
// no output.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/cli/commands.h"
#include "worker/cli/generate_prompts.h"
#include "worker/cli/inference_model.h"
#include "worker/data/chat_template.h"
#include "worker/data/example_encoder.h"
#include "worker/generate/generate.h"
#include "worker/model/model_config.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/train/train_job.h"

namespace foak {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr char kGenerateUsage[] =
    "Usage: foak-worker generate --model DIR [--adapter DIR]\n"
    "                            (--prompt TEXT | --prompts FILE.jsonl | --prompt-ids IDS)\n"
    "                            [--chat] [--chat-template NAME] [--system TEXT]\n"
    "                            [--max-new-tokens N] [--temperature T] [--top-p P]\n"
    "                            [--top-k K] [--seed S] [--device auto|cpu|cuda[:N]]\n"
    "                            [--dtype float32|bfloat16] [--out FILE] [--print-ids]\n"
    "\n"
    "Continues prompts with the model in DIR (config.json, safetensors and its\n"
    "tokenizer files; a folder without tokenizer files uses the byte tokenizer).\n"
    "The prompt gets BOS when the tokenizer adds one, never EOS. Generation stops\n"
    "after --max-new-tokens or at EOS (the tokenizer's and config.json's\n"
    "eos_token_id) or, for chats, at the template's end-of-turn token.\n"
    "  --adapter DIR        a LoRA adapter in PEFT's format applied on top (default none)\n"
    "  --prompt TEXT        one prompt; the completion is printed to stdout\n"
    "  --prompts FILE       JSONL, one prompt per line: {\"prompt\": \"...\"} or\n"
    "                       {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}\n"
    "                       (a chat ending with a user turn; always rendered with the\n"
    "                       chat template). Prints one JSON line per prompt:\n"
    "                       {\"prompt\"|\"messages\": <as given>, \"completion\": TEXT,\n"
    "                       \"tokens\": N, \"stopped\": true if ended at a stop token}\n"
    "  --prompt-ids IDS     one prompt as token ids \"1,2,3\", used as given (no BOS,\n"
    "                       no template); the completion is printed to stdout\n"
    "  --chat               render --prompt and {\"prompt\"} lines as a user turn of the\n"
    "                       chat template, followed by the assistant header\n"
    "  --chat-template NAME llama3, llama2, mistral, chatml, qwen2, granite or plain\n"
    "                       (default: from config.json's model_type, plain for the\n"
    "                       byte tokenizer; see worker/data/chat_template.h)\n"
    "  --system TEXT        system message of chats that have none (needs --chat)\n"
    "  --max-new-tokens N   most tokens generated per prompt (default 128)\n"
    "  --temperature T      0 = greedy (default 0); > 0 samples from softmax(logits / T)\n"
    "  --top-p P            nucleus sampling, in (0, 1] (default 1 = off)\n"
    "  --top-k K            keep the K most likely tokens (default 0 = off)\n"
    "  --seed S             sampling seed, >= 0 (default 0); the same seed gives the\n"
    "                       same text, each prompt starts from it\n"
    "  --device D           default auto (CUDA when available)\n"
    "  --dtype T            parameter dtype (default float32)\n"
    "  --out FILE           write what would go to stdout into FILE instead (atomically)\n"
    "  --print-ids          also give the token ids: \"prompt_ids\" and \"completion_ids\"\n"
    "                       fields in --prompts output; with --prompt / --prompt-ids a\n"
    "                       JSON line {\"prompt_ids\", \"completion_ids\", \"tokens\",\n"
    "                       \"stopped\"} on stderr\n";

// One prompt ready to run.
struct Job {
  const PromptSpec* spec = nullptr;  // null for --prompt-ids
  std::vector<int64_t> prompt_ids;
  std::vector<int64_t> stop_ids;
};

absl::Status CheckGenerate(const Flags& flags) {
  const int sources = static_cast<int>(flags.Has("prompt")) +
                      static_cast<int>(flags.Has("prompts")) +
                      static_cast<int>(flags.Has("prompt-ids"));
  if (sources != 1) {
    return absl::InvalidArgumentError(
        "give exactly one of --prompt TEXT, --prompts FILE.jsonl or --prompt-ids IDS");
  }
  if (flags.Has("system") && !flags.Has("chat")) {
    return absl::InvalidArgumentError("--system needs --chat");
  }
  if (flags.Has("prompt-ids") &&
      (flags.Has("chat") || flags.Has("chat-template") || flags.Has("system"))) {
    return absl::InvalidArgumentError(
        "--prompt-ids are used as given; --chat, --chat-template and --system do not apply");
  }
  return absl::OkStatus();
}

absl::StatusOr<ChatTemplate> ResolveChatTemplate(const Flags& flags, const ModelConfig& config,
                                                 const std::string& model_dir) {
  if (flags.Has("chat-template")) {
    absl::StatusOr<ChatTemplate> t = BuiltinChatTemplate(flags.Get("chat-template"));
    if (!t.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--chat-template ", flags.Get("chat-template"),
                       ": expected llama3, llama2, mistral, chatml, qwen2, granite or plain"));
    }
    return t;
  }
  const bool byte_tokenizer = !PathExists(JoinPath(model_dir, "tokenizer.json")) &&
                              !PathExists(JoinPath(model_dir, "tokenizer.model"));
  absl::StatusOr<ChatTemplate> t = DefaultChatTemplate(config.model_type, byte_tokenizer);
  if (!t.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no default chat template for model_type '", config.model_type, "' of ", model_dir,
        "; pass --chat-template llama3|llama2|mistral|chatml|qwen2|granite|plain"));
  }
  return t;
}

void AddUnique(std::vector<int64_t>* ids, int64_t id) {
  for (int64_t x : *ids) {
    if (x == id) return;
  }
  ids->push_back(id);
}

// The special tokens of the assistant suffix (e.g. <|eot_id|>), and EOS when
// the template puts one after each assistant turn.
std::vector<int64_t> EndOfTurnIds(const ChatTemplate& t, const Tokenizer& tokenizer) {
  std::vector<int64_t> ids;
  for (int64_t id : tokenizer.Encode(t.assistant.suffix, /*parse_special=*/true)) {
    if (tokenizer.IsSpecial(id)) AddUnique(&ids, id);
  }
  if (t.eos_after_assistant && tokenizer.special().eos_id.has_value()) {
    AddUnique(&ids, *tokenizer.special().eos_id);
  }
  return ids;
}

absl::Status CheckVocab(const std::vector<int64_t>& ids, const ModelConfig& config,
                        const std::string& where, const std::string& model_dir) {
  for (int64_t id : ids) {
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": prompt token id ", id, " is outside the vocabulary [0, ", config.vocab_size,
          ") of ", model_dir, " (does the tokenizer belong to this model?)"));
    }
  }
  if (ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the prompt has no tokens; give some text"));
  }
  return absl::OkStatus();
}

absl::Status RunGenerate(const Flags& flags) {
  const std::string model_dir = flags.Get("model");
  ASSIGN_OR_RETURN(std::string dtype, ParseDtype(flags));
  GenerateOptions gen;
  ASSIGN_OR_RETURN(gen.max_new_tokens, ParseIntFlag(flags, "max-new-tokens", 128, 0));
  ASSIGN_OR_RETURN(gen.sampling.temperature,
                   ParseDoubleFlag(
                       flags, "temperature", 0.0, [](double v) { return v >= 0.0; },
                       "a number >= 0 (0 = greedy)"));
  ASSIGN_OR_RETURN(gen.sampling.top_p,
                   ParseDoubleFlag(
                       flags, "top-p", 1.0, [](double v) { return v > 0.0 && v <= 1.0; },
                       "a number in (0, 1] (1 = off)"));
  ASSIGN_OR_RETURN(gen.sampling.top_k, ParseIntFlag(flags, "top-k", 0, 0));
  ASSIGN_OR_RETURN(int64_t seed, ParseIntFlag(flags, "seed", 0, 0));
  gen.sampling.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(flags.Get("device", "auto")));
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(model_dir));

  std::vector<int64_t> base_stop_ids;
  if (tokenizer->special().eos_id.has_value()) {
    AddUnique(&base_stop_ids, *tokenizer->special().eos_id);
  }
  if (config.eos_token_id.has_value()) AddUnique(&base_stop_ids, *config.eos_token_id);

  // Every prompt to ids, before the model is loaded.
  std::vector<PromptSpec> specs;
  std::vector<Job> jobs;
  if (flags.Has("prompt-ids")) {
    ASSIGN_OR_RETURN(auto rows, ParseIdRows("prompt-ids", flags.Get("prompt-ids")));
    if (rows.size() != 1) {
      return absl::InvalidArgumentError("--prompt-ids: give one prompt, ids separated by ','");
    }
    RETURN_IF_ERROR(CheckVocab(rows[0], config, "--prompt-ids", model_dir));
    jobs.push_back(Job{nullptr, rows[0], base_stop_ids});
  } else {
    if (flags.Has("prompts")) {
      ASSIGN_OR_RETURN(specs, ReadPromptsFile(flags.Get("prompts")));
    } else {
      PromptSpec spec;
      spec.where = "--prompt";
      spec.text = flags.Get("prompt");
      specs.push_back(std::move(spec));
    }
    const bool chat = flags.Has("chat");
    std::optional<ChatTemplate> chat_template;
    for (const PromptSpec& spec : specs) {
      Job job{&spec, {}, base_stop_ids};
      if (spec.is_chat || chat) {
        if (!chat_template.has_value()) {
          ASSIGN_OR_RETURN(chat_template, ResolveChatTemplate(flags, config, model_dir));
        }
        std::vector<Message> messages = spec.messages;
        if (!spec.is_chat) messages.push_back(Message{Role::kUser, spec.text});
        if (flags.Has("system") && messages.front().role != Role::kSystem) {
          messages.insert(messages.begin(), Message{Role::kSystem, flags.Get("system")});
        }
        job.prompt_ids =
            EncodeSegments(chat_template->RenderGenerationPrompt(messages), *tokenizer);
        for (int64_t id : EndOfTurnIds(*chat_template, *tokenizer)) AddUnique(&job.stop_ids, id);
      } else {
        if (tokenizer->special().add_bos && tokenizer->special().bos_id.has_value()) {
          job.prompt_ids.push_back(*tokenizer->special().bos_id);
        }
        std::vector<int64_t> body = tokenizer->Encode(spec.text, /*parse_special=*/true);
        job.prompt_ids.insert(job.prompt_ids.end(), body.begin(), body.end());
      }
      RETURN_IF_ERROR(CheckVocab(job.prompt_ids, config, spec.where, model_dir));
      jobs.push_back(std::move(job));
    }
  }

  InferenceModelOptions model_options;
  model_options.model_dir = model_dir;
  model_options.adapter_dir = flags.Get("adapter");
  model_options.dtype = dtype;
  model_options.device = device;
  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadInferenceModel(config, model_options));

  const bool jsonl = flags.Has("prompts");
  const bool to_file = flags.Has("out");
  const bool print_ids = flags.Has("print-ids");
  std::string output;  // kept for --out, written once at the end
  for (const Job& job : jobs) {
    gen.stop_ids = job.stop_ids;
    absl::StatusOr<Generation> result = Generate(model, job.prompt_ids, gen);
    if (!result.ok()) {
      return absl::Status(result.status().code(),
                          absl::StrCat(job.spec != nullptr ? job.spec->where : "--prompt-ids", ": ",
                                       result.status().message()));
    }
    const std::string completion = tokenizer->Decode(result->ids, /*skip_special=*/true);
    std::string text;
    if (jsonl) {
      OrderedJson line;
      if (job.spec->is_chat) {
        line["messages"] = job.spec->messages_json;
      } else {
        line["prompt"] = job.spec->text;
      }
      line["completion"] = completion;
      line["tokens"] = result->ids.size();
      line["stopped"] = result->stopped;
      if (print_ids) {
        line["prompt_ids"] = job.prompt_ids;
        line["completion_ids"] = result->ids;
      }
      // Byte-level tokens may end mid-character: invalid UTF-8 becomes U+FFFD.
      text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    } else {
      text = completion + "\n";
      if (print_ids) {
        OrderedJson ids_json;
        ids_json["prompt_ids"] = job.prompt_ids;
        ids_json["completion_ids"] = result->ids;
        ids_json["tokens"] = result->ids.size();
        ids_json["stopped"] = result->stopped;
        std::fprintf(stderr, "%s\n", ids_json.dump().c_str());
      }
    }
    if (to_file) {
      output += text;
    } else {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
  }
  if (to_file) return WriteFileAtomically(flags.Get("out"), output);
  return absl::OkStatus();
}

}  // namespace

Command GenerateCommand() {
  return {"generate",
          kGenerateUsage,
          {"model", "adapter", "prompt", "prompts", "prompt-ids", "chat-template", "system",
           "max-new-tokens", "temperature", "top-p", "top-k", "seed", "device", "dtype", "out"},
          {"chat", "print-ids"},
          {"model"},
          CheckGenerate,
          RunGenerate};
}

}  // namespace foak
