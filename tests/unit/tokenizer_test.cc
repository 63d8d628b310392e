// Parity of foak's tokenizers with the real Hugging Face libraries: the
// fixtures under tests/testdata/tokenizers/ were written by
// scripts/make_tokenizer_fixtures.py with tokenizers/transformers (and the
// Python SentencePiece) on texts the tokenizers were not trained on.
#include <cstdint>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/tokenizer/raw_byte_tokenizer.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {
namespace {

const std::string kDir = std::string(FOAK_TESTDATA_DIR) + "/tokenizers";

nlohmann::json ReadJson(const std::string& path) {
  auto text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return nlohmann::json::parse(text.value_or("{}"));
}

std::string Escaped(const std::string& s) { return nlohmann::json(s).dump(); }

class HfParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfParityTest, IdsAndDecodeMatchTheRealLibrary) {
  const std::string dir = kDir + "/" + GetParam();
  auto tok = LoadTokenizer(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const nlohmann::json expected = ReadJson(dir + "/expected.json");
  ASSERT_GT(expected["lines"].size(), 30u);
  EXPECT_EQ((*tok)->vocab_size(), expected["vocab_size_with_added"].get<int64_t>());
  const auto opt = [](const nlohmann::json& v) {
    return v.is_null() ? std::optional<int64_t>() : std::optional<int64_t>(v.get<int64_t>());
  };
  EXPECT_EQ((*tok)->special().bos_id, opt(expected["bos_token_id"]));
  EXPECT_EQ((*tok)->special().eos_id, opt(expected["eos_token_id"]));
  EXPECT_EQ((*tok)->special().pad_id, opt(expected["pad_token_id"]));
  EXPECT_EQ((*tok)->special().unk_id, opt(expected["unk_token_id"]));
  for (const auto& line : expected["lines"]) {
    const std::string text = line["text"].get<std::string>();
    const auto ids = line["ids"].get<std::vector<int64_t>>();
    EXPECT_EQ((*tok)->Encode(text), ids) << Escaped(text);
    EXPECT_EQ((*tok)->EncodeExample(text), line["hf_ids_with_special"].get<std::vector<int64_t>>())
        << Escaped(text);
    EXPECT_EQ((*tok)->Decode(ids), line["decoded"].get<std::string>()) << Escaped(text);
    EXPECT_EQ((*tok)->Decode(ids, /*skip_special=*/true),
              line["decoded_skip_special"].get<std::string>()) << Escaped(text);
    const std::vector<int64_t> prefix(ids.begin(), ids.begin() + static_cast<long>(ids.size() / 2));
    EXPECT_EQ((*tok)->Decode(prefix), line["decoded_prefix"].get<std::string>()) << Escaped(text);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfParityTest,
                         ::testing::Values("gpt2", "llama3_bpe", "llama2_bpe", "qwen2_bpe"));

TEST(TokenizerConfigTest, ChatTemplateListTakesDefaultAndStringIsKept) {
  auto llama2 = LoadTokenizer(kDir + "/llama2_bpe");
  ASSERT_TRUE(llama2.ok()) << llama2.status();
  EXPECT_EQ((*llama2)->chat_template().rfind("{{ bos_token }}", 0), 0u);
  EXPECT_TRUE((*llama2)->special().add_bos);
  EXPECT_FALSE((*llama2)->special().add_eos);
  auto llama3 = LoadTokenizer(kDir + "/llama3_bpe");
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_NE((*llama3)->chat_template().find("<|start_header_id|>"), std::string::npos);
  EXPECT_TRUE((*llama3)->special().add_bos);  // from the TemplateProcessing post-processor
  EXPECT_TRUE((*llama3)->IsSpecial(*(*llama3)->TokenToId("<|eot_id|>")));
  EXPECT_FALSE((*llama3)->IsSpecial(*(*llama3)->TokenToId("<tool_call>")));
}

TEST(TokenizerTest, ParseSpecialFalseEncodesSpecialTokensAsText) {
  auto tok = LoadTokenizer(kDir + "/llama3_bpe");
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int64_t eot = *(*tok)->TokenToId("<|eot_id|>");
  const auto parsed = (*tok)->Encode("a<|eot_id|>b");
  const auto literal = (*tok)->Encode("a<|eot_id|>b", /*parse_special=*/false);
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), eot), parsed.end());
  EXPECT_EQ(std::find(literal.begin(), literal.end(), eot), literal.end());
  EXPECT_EQ((*tok)->Decode(literal), "a<|eot_id|>b");
}

TEST(TokenizerTest, NoTokenizerFilesGiveTheByteTokenizer) {
  auto tok = LoadTokenizer(std::string(FOAK_SOURCE_DIR) + "/examples/debug_model");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 258);
  EXPECT_EQ((*tok)->EncodeExample("hi\xff"), (std::vector<int64_t>{256, 'h', 'i', 255, 257}));
  EXPECT_EQ((*tok)->special().pad_id, std::optional<int64_t>(257));
  EXPECT_EQ((*tok)->Decode({256, 'o', 'k', 257}, /*skip_special=*/true), "ok");
}

TEST(TokenizerTest, ByteTokenizerRoundTripsEveryByte) {
  std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<int64_t> ids = tok->Encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(tok->Decode(ids), all);
}

TEST(TokenizerTest, RejectsUnsupportedPreTokenizerNamingFileAndPath) {
  const std::string dir = ::testing::TempDir() + "/bad_tok";
  ASSERT_TRUE(MakeDirs(dir).ok());
  auto j = ReadJson(kDir + "/llama3_bpe/tokenizer.json");
  j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "BertPreTokenizer"}};
  ASSERT_TRUE(WriteFileAtomically(dir + "/tokenizer.json", j.dump()).ok());
  auto tok = LoadTokenizer(dir);
  ASSERT_FALSE(tok.ok());
  const std::string msg(tok.status().message());
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pre_tokenizer.pretokenizers[1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("BertPreTokenizer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Metaspace"), std::string::npos) << msg;  // lists what is supported
  j["model"]["type"] = "WordPiece";
  ASSERT_TRUE(WriteFileAtomically(dir + "/tokenizer.json", j.dump()).ok());
  tok = LoadTokenizer(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(std::string(tok.status().message()).find("WordPiece"), std::string::npos);
}

// Inputs that crashed or hung the loader (fuzz/tokenizer_json_fuzz; the files
// are in fuzz/corpus/tokenizer_json/crash-*): each is now an error naming the
// field and what it should be.
TEST(TokenizerTest, MalformedFieldsAreErrorsNamingTheField) {
  const std::string dir = ::testing::TempDir() + "/malformed_tok";
  ASSERT_TRUE(MakeDirs(dir).ok());
  const nlohmann::json model = {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", nlohmann::json::array()}};
  struct Case {
    nlohmann::json patch;  // merged into {"model": model}
    std::string needle;
  };
  const std::vector<Case> cases = {
      // A dense id table of 2^32 entries: out of memory.
      {{{"model", {{"vocab", {{"a", 4294967296}}}}}}, "model.vocab[\"a\"]: is 4294967296; expected an integer id from 0 to 16777215"},
      // A flag of the wrong type: an uncaught nlohmann::json::type_error.
      {{{"added_tokens", {{{"id", 2}, {"content", "<s>"}, {"special", "yes"}}}}}, "added_tokens[0].special = \"yes\"; expected true or false"},
      // id + 1 overflowed int64 (vocab_size).
      {{{"added_tokens", {{{"id", INT64_MAX}, {"content", "<s>"}}}}}, "added_tokens[0].id = 9223372036854775807; expected an id from 0 to 16777215"},
      {{{"added_tokens", {{{"id", -5}, {"content", "<s>"}}}}}, "added_tokens[0].id = -5"},
      // A BOS id outside the vocabulary reached the embedding lookup.
      {{{"post_processor", {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<s>"}}}}}}, {"special_tokens", {{"<s>", {{"ids", {77}}}}}}}}}, "post_processor.special_tokens[\"<s>\"].ids[0] = 77; expected a token id from 0 to 1"},
      {{{"post_processor", {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<s>"}}}}}}, {"special_tokens", {{"<s>", {{"ids", {"z"}}}}}}}}}, "ids[0] = \"z\""},
      // An empty Strip content matched forever (a hang).
      {{{"decoder", {{"type", "Strip"}, {"content", ""}, {"start", 2147483647}}}}, "decoder.content: is \"\"; expected the character to strip"},
      {{{"decoder", {{"type", "Strip"}, {"content", " "}, {"start", "1"}}}}, "decoder.start = \"1\"; expected a non-negative integer"},
      // Any other option of the wrong type is caught at the file boundary.
      {{{"pre_tokenizer", {{"type", "Metaspace"}, {"add_prefix_space", "yes"}}}}, "a field has the wrong JSON type"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = {{"model", model}};
    j.merge_patch(c.patch);
    ASSERT_TRUE(WriteFileAtomically(dir + "/tokenizer.json", j.dump()).ok());
    auto tok = LoadTokenizer(dir);
    ASSERT_FALSE(tok.ok()) << c.patch.dump();
    const std::string msg(tok.status().message());
    EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << msg;
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << c.patch.dump() << "\n" << msg;
  }
  // The same fields well-formed load.
  nlohmann::json ok = {{"model", model},
                       {"added_tokens", {{{"id", 2}, {"content", "<s>"}, {"special", true}}}},
                       {"decoder", {{"type", "Strip"}, {"content", " "}, {"start", 1}}}};
  ASSERT_TRUE(WriteFileAtomically(dir + "/tokenizer.json", ok.dump()).ok());
  auto tok = LoadTokenizer(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 3);
  EXPECT_TRUE((*tok)->IsSpecial(2));
}

#ifdef FOAK_HAVE_SENTENCEPIECE
TEST(SentencePieceTest, IdsMatchPythonSentencePiece) {
  const std::string dir = ::testing::TempDir() + "/sp_model";
  ASSERT_TRUE(MakeDirs(dir).ok());
  auto model = ReadFileToString(kDir + "/sentencepiece/sp.model");
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/tokenizer.model", *model).ok());
  auto tok = LoadTokenizer(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->special().bos_id, std::optional<int64_t>(1));
  EXPECT_EQ((*tok)->special().eos_id, std::optional<int64_t>(2));
  const nlohmann::json expected = ReadJson(kDir + "/sentencepiece/expected_py.json");
  for (const auto& line : expected["lines"]) {
    const std::string text = line["text"].get<std::string>();
    const auto ids = line["ids"].get<std::vector<int64_t>>();
    EXPECT_EQ((*tok)->Encode(text, /*parse_special=*/false), ids) << Escaped(text);
    EXPECT_EQ((*tok)->Decode(ids), line["decoded"].get<std::string>()) << Escaped(text);
  }
}
#endif

}  // namespace
}  // namespace foak
