// Tests of worker/data's records, chat templates and loss masks.
//
// The expected chat strings below were written by hand from the published
// Jinja chat templates (tokenizer_config.json "chat_template") of
// Meta-Llama-3-8B-Instruct, Llama-2-7b-chat-hf, Mistral-7B-Instruct-v0.2,
// Qwen2-7B-Instruct and granite-3.0-8b-instruct, rendered in the head for
// the given messages; they are not copied from foak's output.
#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/data_test_util.h"
#include "worker/data/chat_template.h"
#include "worker/data/example_encoder.h"
#include "worker/data/record.h"

namespace foak {
namespace {

using testing_data::Contains;
using testing_data::FakeTokenizer;
using testing_data::TrainedText;
using Ids = std::vector<int64_t>;

std::vector<Message> Chat(std::vector<std::pair<Role, std::string>> turns) {
  std::vector<Message> out;
  for (auto& [role, content] : turns) out.push_back(Message{role, content});
  return out;
}

// The rendered string, with BOS/EOS segments written as the given strings.
std::string RenderString(const ChatTemplate& t, const std::vector<Message>& messages,
                         const std::string& bos, const std::string& eos) {
  std::string out;
  for (const Segment& s : t.Render(messages)) {
    out += s.kind == Segment::kBos ? bos : s.kind == Segment::kEos ? eos : s.text;
  }
  return out;
}

// The first expected.size() characters of s.
std::string Head(const std::string& s, const std::string& expected) {
  return s.substr(0, expected.size());
}

ChatTemplate Builtin(const std::string& name) {
  absl::StatusOr<ChatTemplate> t = BuiltinChatTemplate(name);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : ChatTemplate{};
}

const std::vector<Message> kSystemChat = Chat({{Role::kSystem, "Be brief."},
                                               {Role::kUser, "Hi!"},
                                               {Role::kAssistant, "Hello."},
                                               {Role::kUser, "Bye?"},
                                               {Role::kAssistant, "Bye."}});
const std::vector<Message> kChat(kSystemChat.begin() + 1, kSystemChat.end());

// ---- records ----

TEST(Record, ParsesEachFormat) {
  auto text = ParseRecord(R"({"text": "hello", "id": 3})", DataFormat::kText, "f:1: ");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->text, "hello");
  auto alpaca = ParseRecord(R"({"instruction": "Add.", "output": "3"})", DataFormat::kAlpaca, "");
  ASSERT_TRUE(alpaca.ok()) << alpaca.status();
  EXPECT_EQ(alpaca->instruction, "Add.");
  EXPECT_EQ(alpaca->input, "");  // optional
  EXPECT_EQ(alpaca->output, "3");
  auto pc =
      ParseRecord(R"({"prompt": "2+2=", "completion": "4"})", DataFormat::kPromptCompletion, "");
  ASSERT_TRUE(pc.ok()) << pc.status();
  EXPECT_EQ(pc->prompt + pc->completion, "2+2=4");
  auto chat = ParseRecord(
      R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},)"
      R"( {"role": "assistant", "content": "A"}]})",
      DataFormat::kChat, "");
  ASSERT_TRUE(chat.ok()) << chat.status();
  ASSERT_EQ(chat->messages.size(), 3u);
  EXPECT_EQ(chat->messages[0].role, Role::kSystem);
  EXPECT_EQ(chat->messages[2].role, Role::kAssistant);
  EXPECT_EQ(chat->messages[2].content, "A");
}

TEST(Record, DetectsFormatFromKeys) {
  EXPECT_EQ(*DetectFormat(R"({"text": "x"})", ""), DataFormat::kText);
  EXPECT_EQ(*DetectFormat(R"({"instruction": "x", "output": "y"})", ""), DataFormat::kAlpaca);
  EXPECT_EQ(*DetectFormat(R"({"prompt": "x", "completion": "y"})", ""),
            DataFormat::kPromptCompletion);
  EXPECT_EQ(*DetectFormat(R"({"messages": [], "text": "x"})", ""), DataFormat::kChat);
  auto none = DetectFormat(R"({"question": "x"})", "d.jsonl:4: ");
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(Contains(none.status(), "d.jsonl:4: cannot tell the format")) << none.status();
  EXPECT_TRUE(Contains(none.status(), "[question]")) << none.status();
}

TEST(Record, ParsesFormatNames) {
  EXPECT_EQ(*ParseDataFormat("prompt_completion"), DataFormat::kPromptCompletion);
  auto bad = ParseDataFormat("sharegpt");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "'sharegpt'; expected one of auto, text, alpaca"));
}

struct BadCase {
  DataFormat format;
  std::string line;
  std::string expected;
};

TEST(Record, BadLinesSayWhatIsWrongAndWhatIsExpected) {
  const std::vector<BadCase> cases = {
      {DataFormat::kText, R"({"text": "open)", "invalid JSON"},
      {DataFormat::kText, R"(["text"])", "expected a JSON object like {\"text\""},
      {DataFormat::kText, R"({"txt": "x"})", "missing field \"text\" (keys: [txt])"},
      {DataFormat::kText, R"({"text": 5})", "field \"text\" must be a string, got number"},
      {DataFormat::kAlpaca, R"({"instruction": "x"})", "missing field \"output\""},
      {DataFormat::kAlpaca, R"({"instruction": "x", "input": 1, "output": "y"})",
       "field \"input\" must be a string"},
      {DataFormat::kPromptCompletion, R"({"prompt": "x"})", "missing field \"completion\""},
      {DataFormat::kChat, R"({"messages": "hi"})", "\"messages\" must be an array"},
      {DataFormat::kChat, R"({"messages": []})", "\"messages\" is empty"},
      {DataFormat::kChat, R"({"messages": [{"role": "tool", "content": "x"}]})",
       "messages[0].role = 'tool'; expected system, user or assistant"},
      {DataFormat::kChat, R"({"messages": [{"role": "user"}]})",
       "messages[0].content must be a string (missing)"},
      {DataFormat::kChat, R"({"messages": [{"role": "user", "content": "x"}]})",
       "no assistant message"},
      {DataFormat::kChat,
       R"({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]})",
       "messages[1] is a system message; only the first message may be one"},
      {DataFormat::kText, "{\"text\": \"caf\xe9\"}", "invalid UTF-8 at byte 13"},
  };
  for (const BadCase& c : cases) {
    auto r = ParseRecord(c.line, c.format, "data.jsonl:7: ");
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(r.status(), "data.jsonl:7: ")) << r.status();
    EXPECT_TRUE(Contains(r.status(), c.expected)) << r.status() << "\nwanted: " << c.expected;
  }
}

TEST(Record, FindsInvalidUtf8) {
  EXPECT_EQ(FindInvalidUtf8("plain ascii"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), std::nullopt);  // é € 😀
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2u);             // stray continuation byte
  EXPECT_EQ(FindInvalidUtf8("a\xc0\xaf"), 1u);          // overlong '/'
  EXPECT_EQ(FindInvalidUtf8("a\xed\xa0\x80"), 1u);      // UTF-16 surrogate D800
  EXPECT_EQ(FindInvalidUtf8("a\xf4\x90\x80\x80"), 1u);  // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("abc\xe2\x82"), 3u);        // cut short
  EXPECT_EQ(FindInvalidUtf8("\xff"), 0u);
}

// ---- chat templates, against the published Jinja templates ----

TEST(ChatTemplate, Llama3MatchesMetaTemplate) {
  // {{ bos }} then per message '<|start_header_id|>' + role + '<|end_header_id|>\n\n'
  // + content | trim + '<|eot_id|>'.
  std::vector<Message> chat = kSystemChat;
  chat[1].content = "  Hi!\n";  // trimmed
  EXPECT_EQ(RenderString(Builtin("llama3"), chat, "<|begin_of_text|>", "!"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nBye.<|eot_id|>");
}

TEST(ChatTemplate, Qwen2AddsItsDefaultSystemAndChatmlDoesNot) {
  EXPECT_EQ(RenderString(Builtin("qwen2"), kChat, "!", "!"),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nBye?<|im_end|>\n<|im_start|>assistant\nBye.<|im_end|>\n");
  const std::string own_system = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user";
  EXPECT_EQ(Head(RenderString(Builtin("qwen2"), kSystemChat, "!", "!"), own_system), own_system);
  const std::string no_system = "<|im_start|>user\nHi!<|im_end|>";
  EXPECT_EQ(Head(RenderString(Builtin("chatml"), kChat, "!", "!"), no_system), no_system);
}

TEST(ChatTemplate, MistralMatchesInstructV02) {
  // bos_token, then '[INST] ' + content + ' [/INST]' and content + eos_token.
  EXPECT_EQ(RenderString(Builtin("mistral"), kChat, "<s>", "</s>"),
            "<s>[INST] Hi! [/INST]Hello.</s>[INST] Bye? [/INST]Bye.</s>");
  // No system role in the template: foak puts it before the first user message.
  const std::string expected = "<s>[INST] Be brief.\n\nHi! [/INST]Hello.</s>";
  EXPECT_EQ(Head(RenderString(Builtin("mistral"), kSystemChat, "<s>", "</s>"), expected), expected);
}

TEST(ChatTemplate, Llama2MatchesChatTemplate) {
  // bos + '[INST] ' + content.strip() + ' [/INST]' per user turn, the system
  // message wrapped in <<SYS>> inside the first; ' ' + answer.strip() + ' ' + eos.
  EXPECT_EQ(RenderString(Builtin("llama2"), kSystemChat, "BOS", "EOS"),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"
            "<s>[INST] Bye? [/INST] Bye. </s>");
}

TEST(ChatTemplate, GraniteMatchesGranite3) {
  EXPECT_EQ(RenderString(Builtin("granite"), kSystemChat, "!", "!"),
            "<|start_of_role|>system<|end_of_role|>Be brief.<|end_of_text|>\n"
            "<|start_of_role|>user<|end_of_role|>Hi!<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>Hello.<|end_of_text|>\n"
            "<|start_of_role|>user<|end_of_role|>Bye?<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>Bye.<|end_of_text|>\n");
}

TEST(ChatTemplate, PlainIsReadableWithBosAndEos) {
  EXPECT_EQ(
      RenderString(Builtin("plain"), kChat, "<B>", "<E>"),
      "<B>### User:\nHi!\n\n### Assistant:\nHello.<E>### User:\nBye?\n\n### Assistant:\nBye.<E>");
}

TEST(ChatTemplate, DefaultsPerModelFamily) {
  EXPECT_EQ(DefaultChatTemplate("llama", false)->name, "llama3");
  EXPECT_EQ(DefaultChatTemplate("mistral", false)->name, "mistral");
  EXPECT_EQ(DefaultChatTemplate("qwen2", false)->name, "qwen2");
  EXPECT_EQ(DefaultChatTemplate("granite", false)->name, "granite");
  EXPECT_EQ(DefaultChatTemplate("llama", true)->name, "plain");
  auto unknown = DefaultChatTemplate("gpt2", false);
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(Contains(unknown.status(), "model_type 'gpt2'")) << unknown.status();
  auto bad = BuiltinChatTemplate("vicuna");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "'vicuna'; expected one of llama3")) << bad.status();
}

TEST(ChatTemplate, CustomFromJson) {
  auto json = nlohmann::json::parse(R"({
      "system": {"prefix": "<|system|>\n", "suffix": "\n"},
      "user": {"prefix": "<|user|>\n", "suffix": "\n"},
      "assistant": {"prefix": "<|assistant|>\n", "suffix": "\n"},
      "bos": true, "eos": true})");
  auto t = ParseChatTemplate(json, "job.json: dataset.chat_template");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderString(*t, kSystemChat, "<B>", "<E>"),
            "<B><|system|>\nBe brief.\n<|user|>\nHi!\n<|assistant|>\nHello.\n<E>"
            "<|user|>\nBye?\n<|assistant|>\nBye.\n<E>");
  auto typo = ParseChatTemplate(nlohmann::json::parse(R"({"usr": {}})"), "job.json: t");
  ASSERT_FALSE(typo.ok());
  EXPECT_TRUE(Contains(typo.status(), "job.json: t: unknown key 'usr'")) << typo.status();
  auto wrong = ParseChatTemplate(nlohmann::json::parse(R"({"user": {"prefix": 1}})"), "t");
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(Contains(wrong.status(), "t.user.prefix must be a string")) << wrong.status();
  auto flag = ParseChatTemplate(nlohmann::json::parse(R"({"bos": "yes"})"), "t");
  ASSERT_FALSE(flag.ok());
  EXPECT_TRUE(Contains(flag.status(), "t.bos must be true or false")) << flag.status();
}

// ---- encoding and loss masks ----


ExampleEncoder MakeEncoder(const Tokenizer* tok, const std::string& template_name,
                           int64_t max_seq_len = 4096, bool train_on_prompt = false) {
  EncoderOptions options;
  options.chat_template = Builtin(template_name);
  options.max_seq_len = max_seq_len;
  options.train_on_prompt = train_on_prompt;
  auto encoder = ExampleEncoder::Create(options, tok);
  EXPECT_TRUE(encoder.ok()) << encoder.status();
  return *encoder;
}

Record ChatRecord(const std::vector<Message>& messages) {
  Record r;
  r.format = DataFormat::kChat;
  r.messages = messages;
  return r;
}

// The prompt for the next assistant turn, as the published templates render
// with add_generation_prompt=True (written by hand from them).
std::string GenerationPromptString(const ChatTemplate& t, const std::vector<Message>& messages,
                                   const std::string& bos) {
  std::string out;
  for (const Segment& s : t.RenderGenerationPrompt(messages)) {
    EXPECT_FALSE(s.trained);
    out += s.kind == Segment::kBos ? bos : s.kind == Segment::kEos ? "<EOS>" : s.text;
  }
  return out;
}

TEST(ChatTemplate, GenerationPromptEndsWithTheAssistantHeader) {
  const std::vector<Message> ask = Chat({{Role::kSystem, "Be brief."}, {Role::kUser, "Hi!"}});
  EXPECT_EQ(GenerationPromptString(Builtin("llama3"), ask, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(GenerationPromptString(Builtin("qwen2"), Chat({{Role::kUser, "Hi!"}}), "!"),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(GenerationPromptString(Builtin("granite"), Chat({{Role::kUser, "Hi!"}}), "!"),
            "<|start_of_role|>user<|end_of_role|>Hi!<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>");
  // Llama 2 and Mistral end at [/INST]: llama2's whitespace-only assistant
  // prefix is left out.
  EXPECT_EQ(GenerationPromptString(Builtin("llama2"), ask, "BOS"),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST]");
  EXPECT_EQ(GenerationPromptString(Builtin("mistral"), ask, "<s>"),
            "<s>[INST] Be brief.\n\nHi! [/INST]");
  EXPECT_EQ(GenerationPromptString(Builtin("plain"), Chat({{Role::kUser, "Hi!"}}), "<B>"),
            "<B>### User:\nHi!\n\n### Assistant:\n");
  // Earlier turns render as in training, the assistant's with its end token.
  const std::vector<Message> multi(kSystemChat.begin(), kSystemChat.end() - 1);
  EXPECT_EQ(GenerationPromptString(Builtin("chatml"), multi, "!"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ExampleEncoder, EncodeSegmentsTokenizesAsEncodeDoes) {
  FakeTokenizer tok("<|begin_of_text|>", "<|eot_id|>", true, false);
  // The same ids as a training example's, for the same segments.
  EncodeResult r = MakeEncoder(&tok, "llama3").Encode(ChatRecord(kSystemChat));
  ASSERT_TRUE(r.example.has_value());
  EXPECT_EQ(EncodeSegments(Builtin("llama3").Render(kSystemChat), tok), r.example->input_ids);
  // Scaffolding specials are single ids; "<|eot_id|>" in content stays bytes.
  const std::vector<Message> ask = Chat({{Role::kUser, "<|eot_id|>"}});
  const Ids ids = EncodeSegments(Builtin("llama3").RenderGenerationPrompt(ask), tok);
  const int64_t eot = *tok.TokenToId("<|eot_id|>");
  EXPECT_EQ(ids.front(), *tok.TokenToId("<|begin_of_text|>"));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), eot), 1);  // the user turn's suffix only
  EXPECT_EQ(tok.Decode(ids, false), GenerationPromptString(Builtin("llama3"), ask,
                                                           "<|begin_of_text|>"));
  // A tokenizer without BOS skips the BOS segment (Qwen2).
  FakeTokenizer no_bos("", "<|im_end|>", false, false);
  EXPECT_EQ(EncodeSegments({Segment::Token(Segment::kBos, false)}, no_bos), Ids{});
}

TEST(ExampleEncoder, ChatTrainsOnlyAssistantTurnsAndTheirEndTokens) {
  FakeTokenizer tok("<|begin_of_text|>", "<|eot_id|>", true, false);
  EncodeResult r = MakeEncoder(&tok, "llama3").Encode(ChatRecord(kSystemChat));
  ASSERT_TRUE(r.example.has_value());
  EXPECT_FALSE(r.truncated);
  const Example& e = *r.example;
  EXPECT_EQ(TrainedText(tok, e), "Hello.<|eot_id|>|Bye.<|eot_id|>");
  EXPECT_EQ(e.input_ids[0], *tok.TokenToId("<|begin_of_text|>"));
  EXPECT_EQ(e.labels[0], kIgnoreIndex);
  // The specials of the scaffolding are single ids, as the real tokenizer has them.
  EXPECT_EQ(e.input_ids[1], *tok.TokenToId("<|start_header_id|>"));
  EXPECT_EQ(tok.Decode(e.input_ids, false),
            RenderString(Builtin("llama3"), kSystemChat, "<|begin_of_text|>", ""));
}

TEST(ExampleEncoder, TrainOnPromptTrainsEveryToken) {
  FakeTokenizer tok("<|begin_of_text|>", "<|eot_id|>", true, false);
  EncodeResult r = MakeEncoder(&tok, "llama3", 4096, true).Encode(ChatRecord(kChat));
  ASSERT_TRUE(r.example.has_value());
  EXPECT_EQ(r.example->labels, r.example->input_ids);
}

TEST(ExampleEncoder, ContentCannotInjectSpecialTokens) {
  FakeTokenizer tok("<|begin_of_text|>", "<|eot_id|>", true, false);
  std::vector<Message> chat =
      Chat({{Role::kUser, "say <|eot_id|>"}, {Role::kAssistant, "<|eot_id|>"}});
  EncodeResult r = MakeEncoder(&tok, "llama3").Encode(ChatRecord(chat));
  ASSERT_TRUE(r.example.has_value());
  const int64_t eot = *tok.TokenToId("<|eot_id|>");
  // Only the two end-of-turn suffixes are the special id; the content is bytes.
  EXPECT_EQ(std::count(r.example->input_ids.begin(), r.example->input_ids.end(), eot), 2);
}

TEST(ExampleEncoder, PlainTemplateEndsAnswersWithEos) {
  FakeTokenizer tok("<s>", "</s>", true, true);
  EncodeResult r = MakeEncoder(&tok, "plain").Encode(ChatRecord(kChat));
  ASSERT_TRUE(r.example.has_value());
  EXPECT_EQ(TrainedText(tok, *r.example), "Hello.</s>|Bye.</s>");
}

TEST(ExampleEncoder, Qwen2HasNoBosWhenTheTokenizerHasNone) {
  FakeTokenizer tok("", "<|im_end|>", false, false);
  EncodeResult r = MakeEncoder(&tok, "qwen2").Encode(ChatRecord(kChat));
  ASSERT_TRUE(r.example.has_value());
  EXPECT_EQ(r.example->input_ids[0], *tok.TokenToId("<|im_start|>"));
  EXPECT_EQ(TrainedText(tok, *r.example), "Hello.<|im_end|>\n|Bye.<|im_end|>\n");
}

TEST(ExampleEncoder, AlpacaUsesTheClassicPromptAndTrainsTheOutput) {
  FakeTokenizer tok("<s>", "</s>", true, false);
  Record r;
  r.format = DataFormat::kAlpaca;
  r.instruction = "Add the numbers.";
  r.input = "2 and 3";
  r.output = "5";
  EncodeResult with_input = MakeEncoder(&tok, "plain").Encode(r);
  ASSERT_TRUE(with_input.example.has_value());
  // Stanford Alpaca's prompt_input, then the output and EOS.
  EXPECT_EQ(tok.Decode(with_input.example->input_ids, false),
            "<s>Below is an instruction that describes a task, paired with an input that provides "
            "further context. Write a response that appropriately completes the request.\n\n"
            "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n5</s>");
  EXPECT_EQ(TrainedText(tok, *with_input.example), "5</s>");
  r.input.clear();
  EncodeResult no_input = MakeEncoder(&tok, "plain").Encode(r);
  EXPECT_EQ(tok.Decode(no_input.example->input_ids, false),
            "<s>Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\nAdd the numbers.\n\n### Response:\n5</s>");
}

TEST(ExampleEncoder, AlpacaAsChatUsesTheChatTemplate) {
  FakeTokenizer tok("<s>", "</s>", true, true);
  EncoderOptions options;
  options.chat_template = Builtin("plain");
  options.instructions_as_chat = true;
  auto encoder = ExampleEncoder::Create(options, &tok);
  ASSERT_TRUE(encoder.ok());
  Record r;
  r.format = DataFormat::kAlpaca;
  r.instruction = "Add.";
  r.input = "2 3";
  r.output = "5";
  EncodeResult e = encoder->Encode(r);
  EXPECT_EQ(tok.Decode(e.example->input_ids, false),
            "<s>### User:\nAdd.\n\n2 3\n\n### Assistant:\n5</s>");
  EXPECT_EQ(TrainedText(tok, *e.example), "5</s>");
}

TEST(ExampleEncoder, PromptCompletionConcatenatesAndParsesSpecials) {
  FakeTokenizer tok("<s>", "</s>", false, false);
  Record r;
  r.format = DataFormat::kPromptCompletion;
  r.prompt = "<|im_start|>Q: 2+2?\nA:";
  r.completion = " 4";
  EncodeResult e = MakeEncoder(&tok, "plain").Encode(r);
  ASSERT_TRUE(e.example.has_value());
  EXPECT_EQ(e.example->input_ids[0], *tok.TokenToId("<|im_start|>"));  // no BOS: add_bos false
  EXPECT_EQ(TrainedText(tok, *e.example), " 4</s>");  // EOS appended even without add_eos
}

TEST(ExampleEncoder, TextTrainsEverythingButBos) {
  FakeTokenizer tok("<s>", "</s>", true, true);
  Record r;
  r.format = DataFormat::kText;
  r.text = "ab";
  EncodeResult e = MakeEncoder(&tok, "plain").Encode(r);
  ASSERT_TRUE(e.example.has_value());
  EXPECT_EQ(e.example->input_ids, (Ids{256, 'a', 'b', 257}));
  EXPECT_EQ(e.example->labels, (Ids{kIgnoreIndex, 'a', 'b', 257}));
}

TEST(ExampleEncoder, TruncationKeepsTheLeftAndDropsExamplesWithNothingToTrain) {
  FakeTokenizer tok("<s>", "</s>", true, true);
  Record r;
  r.format = DataFormat::kPromptCompletion;
  r.prompt = "0123456789";
  r.completion = "xyz";
  // <s> + 10 prompt bytes + 3 completion bytes + </s> = 15 tokens.
  EncodeResult fits = MakeEncoder(&tok, "plain", 15).Encode(r);
  ASSERT_TRUE(fits.example.has_value());
  EXPECT_FALSE(fits.truncated);
  EncodeResult cut = MakeEncoder(&tok, "plain", 13).Encode(r);
  ASSERT_TRUE(cut.example.has_value());
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.example->size(), 13);
  EXPECT_EQ(TrainedText(tok, *cut.example), "xy");  // the right end is cut
  EncodeResult gone = MakeEncoder(&tok, "plain", 11).Encode(r);
  EXPECT_TRUE(gone.truncated);
  EXPECT_FALSE(gone.example.has_value());  // only prompt left: dropped
}

TEST(ExampleEncoder, RejectsTooShortMaxSeqLenAndMissingEos) {
  FakeTokenizer tok("<s>", "", true, false);
  EncoderOptions options;
  options.chat_template = Builtin("plain");  // needs EOS
  auto no_eos = ExampleEncoder::Create(options, &tok);
  ASSERT_FALSE(no_eos.ok());
  EXPECT_TRUE(Contains(no_eos.status(), "no eos_token")) << no_eos.status();
  options.chat_template = Builtin("llama3");
  options.max_seq_len = 1;
  auto short_len = ExampleEncoder::Create(options, &tok);
  ASSERT_FALSE(short_len.ok());
  EXPECT_TRUE(Contains(short_len.status(), "max_seq_len = 1")) << short_len.status();
}

}  // namespace
}  // namespace foak
