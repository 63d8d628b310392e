// End-to-end runs of `foak-worker generate`, checked against the library:
// the ids the binary reports (--print-ids) must be the ids that
// worker/generate's Generate gives in-process for the same prompt, model and
// options, so the CLI adds only prompt handling and output, never numerics of
// its own. Models: the debug model of examples/ (byte tokenizer, made with
// init-model) and the parity model tests/testdata/parity/llama3_gqa with the
// foak-saved LoRA adapter tests/testdata/peft/foak_export/adapter.
#include <stdlib.h>
#include <sys/wait.h>
#include <torch/types.h>
#include <unistd.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/worker_run.h"
#include "nlohmann/json.hpp"
#include "worker/generate/generate.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_io.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/weights.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {
namespace {

using testing::TempDir;

using Ids = std::vector<int64_t>;

const std::string kParityModel = FOAK_TESTDATA_DIR "/parity/llama3_gqa";
const std::string kAdapter = FOAK_TESTDATA_DIR "/peft/foak_export/adapter";

using RunResult = testing::WorkerResult;

RunResult Worker(const std::string& args) { return testing::RunWorkerCapture(args); }

// The JSON line --print-ids writes to stderr (the last line).
nlohmann::json IdsLine(const RunResult& r) {
  std::string last, line;
  std::istringstream in(r.err);
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  nlohmann::json j = nlohmann::json::parse(last, nullptr, false);
  EXPECT_TRUE(j.is_object()) << r.err;
  return j.is_object() ? j
                       : nlohmann::json::object({{"prompt_ids", Ids{}}, {"completion_ids", Ids{}}});
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// The model as the CLI builds it (uninitialised, weights loaded, eval), on
// the CPU: every run below passes --device cpu so that ids compare exactly.
LlamaForCausalLM LoadModel(const std::string& dir, const std::string& adapter = "") {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  ModelInit init;
  init.random = false;
  LlamaForCausalLM model(*config, init);
  absl::Status loaded = LoadWeights(model, dir);
  EXPECT_TRUE(loaded.ok()) << loaded;
  if (!adapter.empty()) {
    absl::StatusOr<LoraConfig> lora = LoadLoraAdapter(model, adapter);
    EXPECT_TRUE(lora.ok()) << lora.status();
  }
  model->eval();
  return model;
}

Ids LibraryGenerate(LlamaForCausalLM& model, const Ids& prompt, int64_t max_new_tokens,
                    const Ids& stop_ids, double temperature = 0.0, uint64_t seed = 0) {
  GenerateOptions options;
  options.max_new_tokens = max_new_tokens;
  options.stop_ids = stop_ids;
  options.sampling.temperature = temperature;
  options.sampling.seed = seed;
  absl::StatusOr<Generation> g = Generate(model, prompt, options);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? g->ids : Ids{};
}

Ids Bytes(const std::string& text) {
  Ids ids;
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

Ids Concat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A debug model (vocab 258: bytes, <bos> 256, <eos> 257) in `dir`/model.
std::string DebugModel(const std::string& dir) {
  const std::string model = dir + "/model";
  RunResult init = Worker("init-model --config " + std::string(FOAK_SOURCE_DIR) +
                          "/examples/debug_model/config.json --out " + model + " --seed 5");
  EXPECT_EQ(init.exit_code, 0) << init.err;
  return model;
}

TEST(GenerateCli, GreedyIsDeterministicAndEqualsTheLibrary) {
  const testing::TempDir tmp("generate_test");
  const std::string model = DebugModel(tmp.path());
  const std::string args = "generate --device cpu --model " + model +
                           " --prompt 'Hello' --max-new-tokens 24 --print-ids";
  RunResult a = Worker(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  RunResult b = Worker(args);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.err, b.err);

  const nlohmann::json ids = IdsLine(a);
  const Ids prompt = ids["prompt_ids"].get<Ids>();
  EXPECT_EQ(prompt, Concat({256}, Bytes("Hello")));  // BOS (add_bos), no EOS
  LlamaForCausalLM lib = LoadModel(model);
  const Ids expected = LibraryGenerate(lib, prompt, 24, {257});
  EXPECT_EQ(ids["completion_ids"].get<Ids>(), expected);
  EXPECT_EQ(ids["tokens"].get<size_t>(), expected.size());
  EXPECT_EQ(ids["stopped"].get<bool>(), expected.size() < 24);
  // stdout is the decoded completion.
  EXPECT_EQ(a.out, MakeByteTokenizer()->Decode(expected, true) + "\n");
}

TEST(GenerateCli, SeedMakesSamplingReproducible) {
  const testing::TempDir tmp("generate_test");
  const std::string model = DebugModel(tmp.path());
  auto sample = [&](int seed) {
    RunResult r = Worker("generate --device cpu --model " + model +
                         " --prompt 'Once' --max-new-tokens 32 --temperature 1.0 --seed " +
                         std::to_string(seed) + " --print-ids");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return IdsLine(r)["completion_ids"].get<Ids>();
  };
  const Ids seed1 = sample(1);
  EXPECT_EQ(sample(1), seed1);
  EXPECT_NE(sample(2), seed1);
  LlamaForCausalLM lib = LoadModel(model);
  EXPECT_EQ(seed1, LibraryGenerate(lib, Concat({256}, Bytes("Once")), 32, {257}, 1.0, 1));
  // top-k 1 is greedy whatever the temperature and seed.
  RunResult greedy = Worker("generate --device cpu --model " + model +
                            " --prompt 'Once' --max-new-tokens 8 --print-ids");
  RunResult top1 = Worker("generate --device cpu --model " + model +
                          " --prompt 'Once' --max-new-tokens 8 --temperature 5 --top-k 1 --seed 9 "
                          "--print-ids");
  EXPECT_EQ(IdsLine(top1)["completion_ids"], IdsLine(greedy)["completion_ids"]);
}

TEST(GenerateCli, PromptsJsonlInAndOut) {
  const testing::TempDir tmp("generate_test");
  const std::string dir = tmp.path();
  const std::string model = DebugModel(dir);
  ASSERT_TRUE(WriteFileAtomically(dir + "/prompts.jsonl",
                                  "{\"prompt\": \"Hello\", \"id\": 7}\n"
                                  "\n"
                                  "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\r\n"
                                  "{\"prompt\": \"The cat\"}\n")
                  .ok());
  RunResult r = Worker("generate --device cpu --model " + model + " --prompts " + dir +
                       "/prompts.jsonl --max-new-tokens 6 --print-ids --out " + dir + "/out.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");  // all of it went to --out
  const std::vector<nlohmann::json> lines = JsonLines(*ReadFileToString(dir + "/out.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["prompt"], "Hello");
  EXPECT_EQ(lines[1]["messages"][0]["content"], "Hi");
  EXPECT_EQ(lines[2]["prompt"], "The cat");
  for (const nlohmann::json& line : lines) {
    EXPECT_TRUE(line["completion"].is_string());
    EXPECT_EQ(line["tokens"].get<size_t>(), line["completion_ids"].size());
    EXPECT_TRUE(line["stopped"].is_boolean());
  }
  // The plain template for the byte tokenizer's chat line.
  EXPECT_EQ(lines[1]["prompt_ids"].get<Ids>(),
            Concat({256}, Bytes("### User:\nHi\n\n### Assistant:\n")));
  // A line gives what --prompt gives for the same text.
  RunResult single = Worker("generate --device cpu --model " + model +
                            " --prompt 'The cat' --max-new-tokens 6 --print-ids");
  ASSERT_EQ(single.exit_code, 0) << single.err;
  EXPECT_EQ(lines[2]["completion_ids"], IdsLine(single)["completion_ids"]);
  // (The texts can differ: random bytes are often not UTF-8, which JSON lines
  // carry as U+FFFD while stdout gets the raw bytes.)

  // To stdout without --out, and without the id fields unless asked.
  RunResult plain = Worker("generate --device cpu --model " + model + " --prompts " + dir +
                           "/prompts.jsonl --max-new-tokens 6");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const std::vector<nlohmann::json> printed = JsonLines(plain.out);
  ASSERT_EQ(printed.size(), 3u);
  EXPECT_EQ(printed[2]["completion"], lines[2]["completion"]);
  EXPECT_FALSE(printed[0].contains("prompt_ids"));

  // Bad lines fail naming file:line, before anything is generated or written.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"prompt\": 5}", "field \"prompt\" must be a string"},
      {"not json", "invalid JSON"},
      {"{\"text\": \"x\"}", "no \"prompt\" or \"messages\""},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
       "{\"role\": \"assistant\", \"content\": \"b\"}]}",
       "must end with the user message"},
      {"{\"messages\": [{\"role\": \"robot\", \"content\": \"a\"}]}", "messages[0].role = 'robot'"},
  };
  for (const auto& [line, message] : bad) {
    ASSERT_TRUE(
        WriteFileAtomically(dir + "/bad.jsonl", "{\"prompt\": \"ok\"}\n" + line + "\n").ok());
    RunResult f = Worker("generate --device cpu --model " + model + " --prompts " + dir +
                         "/bad.jsonl --out " + dir + "/bad_out.jsonl");
    EXPECT_EQ(f.exit_code, 1) << line;
    EXPECT_NE(f.err.find(dir + "/bad.jsonl:2: "), std::string::npos) << f.err;
    EXPECT_NE(f.err.find(message), std::string::npos) << f.err;
    EXPECT_FALSE(PathExists(dir + "/bad_out.jsonl"));
  }
}

TEST(GenerateCli, ChatRendersTheTemplate) {
  const testing::TempDir tmp("generate_test");
  const std::string model = DebugModel(tmp.path());
  // Default for the byte tokenizer: plain, with the optional system message.
  RunResult plain =
      Worker("generate --device cpu --model " + model +
             " --prompt 'Hi' --chat --system 'Be brief.' --max-new-tokens 4 --print-ids");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(IdsLine(plain)["prompt_ids"].get<Ids>(),
            Concat({256}, Bytes("### System:\nBe brief.\n\n### User:\nHi\n\n### Assistant:\n")));
  // A named template (chatml has no BOS); the byte tokenizer spells its
  // specials as bytes.
  RunResult chatml =
      Worker("generate --device cpu --model " + model +
             " --prompt 'Hi' --chat --chat-template chatml --max-new-tokens 4 --print-ids");
  ASSERT_EQ(chatml.exit_code, 0) << chatml.err;
  EXPECT_EQ(IdsLine(chatml)["prompt_ids"].get<Ids>(),
            Bytes("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
  // Without --chat the same text is a plain continuation.
  RunResult text = Worker("generate --device cpu --model " + model +
                          " --prompt 'Hi' --max-new-tokens 4 --print-ids");
  EXPECT_EQ(IdsLine(text)["prompt_ids"].get<Ids>(), Concat({256}, Bytes("Hi")));

  RunResult unknown = Worker("generate --device cpu --model " + model +
                             " --prompt Hi --chat --chat-template vicuna");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("--chat-template vicuna: expected llama3"), std::string::npos)
      << unknown.err;
}

TEST(GenerateCli, AdapterChangesTheOutputAndEqualsTheMergedModel) {
  // The parity model has vocab 250 and no tokenizer files (byte tokenizer,
  // whose BOS 256 it lacks), so prompts go in as ids.
  const Ids prompt = {1, 17, 42, 99, 5, 200};
  const std::string base_args = "generate --device cpu --model " + kParityModel +
                                " --prompt-ids 1,17,42,99,5,200 --max-new-tokens 12 --print-ids";
  RunResult base = Worker(base_args);
  ASSERT_EQ(base.exit_code, 0) << base.err;
  RunResult adapted = Worker(base_args + " --adapter " + kAdapter);
  ASSERT_EQ(adapted.exit_code, 0) << adapted.err;
  const Ids base_ids = IdsLine(base)["completion_ids"].get<Ids>();
  const Ids adapted_ids = IdsLine(adapted)["completion_ids"].get<Ids>();
  EXPECT_EQ(IdsLine(adapted)["prompt_ids"].get<Ids>(), prompt);
  EXPECT_NE(adapted_ids, base_ids);

  // Stop ids: the byte tokenizer's EOS 257 and config.json's eos_token_id 2.
  LlamaForCausalLM plain = LoadModel(kParityModel);
  EXPECT_EQ(base_ids, LibraryGenerate(plain, prompt, 12, {257, 2}));
  LlamaForCausalLM merged = LoadModel(kParityModel, kAdapter);
  EXPECT_EQ(adapted_ids, LibraryGenerate(merged, prompt, 12, {257, 2}));
  ASSERT_TRUE(MergeLora(merged).ok());
  EXPECT_EQ(CountLoraAdapters(merged), 0);
  EXPECT_EQ(adapted_ids, LibraryGenerate(merged, prompt, 12, {257, 2}));

  // Text with the tokenizer's BOS does not fit this vocabulary: named, exit 1.
  RunResult bos = Worker("generate --device cpu --model " + kParityModel + " --prompt Hi");
  EXPECT_EQ(bos.exit_code, 1);
  EXPECT_NE(bos.err.find("--prompt: prompt token id 256 is outside the vocabulary [0, 250)"),
            std::string::npos)
      << bos.err;
  RunResult no_adapter = Worker(base_args + " --adapter /nonexistent/adapter");
  EXPECT_EQ(no_adapter.exit_code, 1);
  EXPECT_NE(no_adapter.err.find("/nonexistent/adapter"), std::string::npos) << no_adapter.err;
}

TEST(GenerateCli, UsageDocumentsEveryFlagAndRejectsBadCombinations) {
  RunResult help = Worker("generate --help");
  ASSERT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--model", "--adapter",       "--prompt ",   "--prompts",        "--prompt-ids",
        "--chat ", "--chat-template", "--system",    "--max-new-tokens", "--temperature",
        "--top-p", "--top-k",         "--seed",      "--device",         "--dtype",
        "--out",   "--print-ids",     "default 128", "default 0",        "default 1"}) {
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  }
  RunResult main_help = Worker("--help");
  EXPECT_NE(main_help.out.find("generate    --model DIR"), std::string::npos) << main_help.out;

  const std::vector<std::pair<std::string, std::string>> usage_errors = {
      {"--model m", "give exactly one of --prompt"},
      {"--model m --prompt a --prompts b", "give exactly one of --prompt"},
      {"--prompt a", "--model is required"},
      {"--model m --prompt a --system s", "--system needs --chat"},
      {"--model m --prompt-ids 1,2 --chat", "--prompt-ids are used as given"},
      {"--model m --prompt a --chat=yes", "--chat takes no value"},
      {"--model m --prompt a --temprature 1", "unknown option --temprature"},
  };
  for (const auto& [args, message] : usage_errors) {
    RunResult r = Worker("generate --device cpu " + args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
    EXPECT_NE(r.err.find("Usage: foak-worker generate"), std::string::npos) << r.err;
  }
  const testing::TempDir tmp("generate_test");
  const std::string model = DebugModel(tmp.path());
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"--top-p 0", "--top-p 0: expected a number in (0, 1]"},
           {"--temperature -1", "--temperature -1: expected a number >= 0"},
           {"--max-new-tokens x", "--max-new-tokens x: expected an integer >= 0"},
           {"--seed -3", "--seed -3: expected an integer >= 0"}}) {
    RunResult r = Worker("generate --device cpu --model " + model + " --prompt a " + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
  }
}

}  // namespace
}  // namespace foak
