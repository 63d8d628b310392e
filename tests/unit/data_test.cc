// Tests of worker/data: byte tokenizer, JSONL reading, batch layouts, shuffling.
#include <stdlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "worker/data/batcher.h"
#include "worker/data/byte_tokenizer.h"
#include "worker/data/jsonl_reader.h"
#include "worker/data/shuffle_buffer.h"
#include "worker/data/text_dataset.h"

namespace foak {
namespace {

using Ids = std::vector<int64_t>;
constexpr int64_t kBos = ByteTokenizer::kBosId;
constexpr int64_t kEos = ByteTokenizer::kEosId;
constexpr int64_t kIgn = kIgnoreIndex;

// A temp folder for a test's files, removed when the test ends.
class TempFiles {
 public:
  TempFiles() {
    char tmpl[] = "/tmp/foak_data_test_XXXXXX";
    const char* dir = mkdtemp(tmpl);
    EXPECT_NE(dir, nullptr);
    dir_ = dir == nullptr ? "/tmp" : dir;
  }
  ~TempFiles() { RemoveTree(dir_).IgnoreError(); }
  std::string Write(const std::string& name, const std::string& contents) {
    std::string path = JoinPath(dir_, name);
    EXPECT_TRUE(WriteFileAtomically(path, contents).ok());
    return path;
  }

 private:
  std::string dir_;
};

bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

TEST(ByteTokenizer, RoundTripsAnyBytes) {
  ByteTokenizer tok;
  std::string text = "h\xc3\xa9llo\n\t";
  text.push_back('\0');
  text.push_back('\xff');
  Ids ids = tok.Encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[0], 'h');
  EXPECT_EQ(ids[1], 0xc3);
  EXPECT_EQ(ids.back(), 255);
  EXPECT_EQ(tok.Decode(ids), text);
}

TEST(ByteTokenizer, ExampleIsBosBytesEosAndTruncates) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.EncodeExample("ab", 16), (Ids{kBos, 'a', 'b', kEos}));
  EXPECT_EQ(tok.EncodeExample("ab", 4), (Ids{kBos, 'a', 'b', kEos}));
  EXPECT_EQ(tok.EncodeExample("abc", 4), (Ids{kBos, 'a', 'b', 'c'}));
  EXPECT_EQ(tok.EncodeExample("", 4), (Ids{kBos, kEos}));
  // Decoding skips the specials.
  EXPECT_EQ(tok.Decode(tok.EncodeExample("xyz", 10)), "xyz");
}

TEST(ByteTokenizer, ChecksModelVocab) {
  EXPECT_TRUE(ByteTokenizer::CheckModelVocab(258).ok());
  EXPECT_TRUE(ByteTokenizer::CheckModelVocab(32000).ok());
  absl::Status s = ByteTokenizer::CheckModelVocab(257);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s, "257")) << s;
  EXPECT_TRUE(Contains(s, ">= 258")) << s;
}

TEST(JsonlTextReader, ReadsTextsSkipsBlankLinesAndRewinds) {
  TempFiles tmp;
  std::string path = tmp.Write(
      "a.jsonl", "{\"text\": \"one\"}\n\n{\"id\": 7, \"text\": \"two \\u00e9\"}\r\n   \n{\"text\": \"\"}");
  auto reader = JsonlTextReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::string text;
  std::vector<std::string> texts;
  std::vector<int64_t> lines;
  while (true) {
    auto more = (*reader)->Next(&text);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    texts.push_back(text);
    lines.push_back((*reader)->line_number());
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"one", "two \xc3\xa9", ""}));
  EXPECT_EQ(lines, (std::vector<int64_t>{1, 3, 5}));
  ASSERT_TRUE((*reader)->Rewind().ok());
  ASSERT_TRUE(*(*reader)->Next(&text));
  EXPECT_EQ(text, "one");
}

struct BadLineCase {
  std::string line;
  std::string expected;
};

TEST(JsonlTextReader, BadLinesNameFileAndLine) {
  TempFiles tmp;
  const std::vector<BadLineCase> cases = {
      {"{\"text\": \"unterminated}", "invalid JSON"},
      {"{\"txt\": \"typo\"}", "missing field \"text\""},
      {"{\"text\": 42}", "field \"text\" must be a string, got number"},
      {"{\"text\": null}", "must be a string, got null"},
      {"[\"text\"]", "expected a JSON object"},
  };
  for (const BadLineCase& c : cases) {
    std::string path = tmp.Write("bad.jsonl", "{\"text\": \"fine\"}\n\n" + c.line + "\n");
    auto reader = JsonlTextReader::Open(path);
    ASSERT_TRUE(reader.ok());
    std::string text;
    ASSERT_TRUE(*(*reader)->Next(&text));
    auto more = (*reader)->Next(&text);
    ASSERT_FALSE(more.ok()) << c.line;
    EXPECT_EQ(more.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(more.status(), path + ":3: ")) << more.status();
    EXPECT_TRUE(Contains(more.status(), c.expected)) << more.status();
  }
}

TEST(JsonlTextReader, MissingFileIsNotFoundNamingThePath) {
  auto reader = JsonlTextReader::Open("/nonexistent/foak/data.jsonl");
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(reader.status(), "/nonexistent/foak/data.jsonl"));
}

TEST(Batcher, PaddedLayout) {
  Batch b = Batcher::MakePaddedBatch({{kBos, 1, 2, kEos}, {kBos, 3, kEos}}, kEos);
  ASSERT_EQ(b.B, 2);
  ASSERT_EQ(b.T, 4);
  EXPECT_EQ(b.input_ids, (Ids{kBos, 1, 2, kEos, kBos, 3, kEos, kEos}));
  EXPECT_EQ(b.labels, (Ids{kBos, 1, 2, kEos, kBos, 3, kEos, kIgn}));
  EXPECT_EQ(b.position_ids, (Ids{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(b.num_tokens, 7);
  EXPECT_EQ(b.NumTargetTokens(), 3 + 2);  // label 0 of each row is never predicted
}

// A source that cycles through `examples`.
ExampleSource Cycle(std::vector<Ids> examples) {
  auto next = std::make_shared<size_t>(0);
  return [examples, next]() -> absl::StatusOr<Ids> {
    return examples[(*next)++ % examples.size()];
  };
}

TEST(Batcher, PackingCarriesExamplesThatDoNotFit) {
  const Ids a = {kBos, 10, kEos};       // 3
  const Ids b = {kBos, 20, 21, kEos};   // 4
  const Ids c = {kBos, 30, kEos};       // 3
  const Ids d = {kBos, kEos};           // 2
  Batcher batcher({/*batch_size=*/2, /*max_seq_len=*/8, /*packing=*/true, kEos},
                  Cycle({a, b, c, d}));
  auto batch = batcher.Next();
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->B, 2);
  ASSERT_EQ(batch->T, 8);
  // Row 0: a + b (7 tokens); c does not fit the last slot -> carried; 1 pad.
  // Row 1: c + d + a (3 + 2 + 3 = 8, exactly full).
  EXPECT_EQ(batch->input_ids, (Ids{kBos, 10, kEos, kBos, 20, 21, kEos, kEos,  //
                                   kBos, 30, kEos, kBos, kEos, kBos, 10, kEos}));
  EXPECT_EQ(batch->labels, (Ids{kIgn, 10, kEos, kIgn, 20, 21, kEos, kIgn,  //
                                kIgn, 30, kEos, kIgn, kEos, kIgn, 10, kEos}));
  EXPECT_EQ(batch->position_ids, (Ids{0, 1, 2, 0, 1, 2, 3, 0,  //
                                      0, 1, 2, 0, 1, 0, 1, 2}));
  EXPECT_EQ(batch->num_tokens, 15);
  EXPECT_EQ(batch->NumTargetTokens(), 2 + 3 + 2 + 1 + 2);
  // The next batch starts with b (after a, the cycle continues).
  auto next = batcher.Next();
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((Ids(next->input_ids.begin(), next->input_ids.begin() + 4)), b);
}

TEST(Batcher, PackingFullLengthExampleFillsARow) {
  const Ids long_one = {kBos, 1, 2, 3};
  const Ids short_one = {kBos, kEos};
  Batcher batcher({2, 4, true, kEos}, Cycle({short_one, long_one}));
  auto batch = batcher.Next();
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->input_ids, (Ids{kBos, kEos, kEos, kEos, kBos, 1, 2, 3}));
  EXPECT_EQ(batch->position_ids, (Ids{0, 1, 0, 1, 0, 1, 2, 3}));
  EXPECT_EQ(batch->labels, (Ids{kIgn, kEos, kIgn, kIgn, kIgn, 1, 2, 3}));
}

TEST(Batcher, PaddingModePullsBatchSizeExamples) {
  Batcher batcher({3, 8, false, kEos}, Cycle({{kBos, 5, kEos}, {kBos, 6, 7, 8, kEos}}));
  auto batch = batcher.Next();
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->B, 3);
  EXPECT_EQ(batch->T, 5);
  EXPECT_EQ((Ids(batch->input_ids.begin() + 10, batch->input_ids.end())),
            (Ids{kBos, 5, kEos, kEos, kEos}));
}

TEST(Batcher, SourceErrorsPropagate) {
  Batcher batcher({1, 8, true, kEos},
                  []() -> absl::StatusOr<Ids> { return absl::DataLossError("x.jsonl:9: bad"); });
  auto batch = batcher.Next();
  ASSERT_FALSE(batch.ok());
  EXPECT_TRUE(Contains(batch.status(), "x.jsonl:9"));
}

TEST(ShuffleBuffer, SameSeedSameOrderAndAPermutation) {
  auto run = [](size_t capacity, uint64_t seed) {
    ShuffleBuffer<int> buffer(capacity, seed);
    std::vector<int> out;
    for (int i = 0; i < 100; ++i) {
      if (auto x = buffer.Push(i)) out.push_back(*x);
    }
    while (auto x = buffer.Pop()) out.push_back(*x);
    return out;
  };
  std::vector<int> a = run(16, 1);
  EXPECT_EQ(a, run(16, 1));
  EXPECT_NE(a, run(16, 2));
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 100; ++i) ASSERT_EQ(sorted[i], i);
  std::vector<int> identity = run(1, 1);
  EXPECT_TRUE(std::is_sorted(identity.begin(), identity.end()));
  // Bounded memory: the k-th item out was among the first k + 16 in, so it
  // is at most k + 15.
  for (int pos = 0; pos < 100; ++pos) EXPECT_GE(pos, a[pos] - 15);
}

TEST(ShuffleBuffer, UniformIndexStaysInRange) {
  std::mt19937_64 rng(3);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 7000; ++i) ++counts[UniformIndex(rng, 7)];
  for (int c : counts) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
}

std::string NumberedJsonl(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "{\"text\": \"" + std::to_string(i) + "\"}\n";
  return s;
}

std::vector<std::string> ReadTexts(TextDataset& dataset, int n) {
  ByteTokenizer tok;
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    auto e = dataset.Next();
    EXPECT_TRUE(e.ok()) << e.status();
    out.push_back(tok.Decode(*e));
  }
  return out;
}

TEST(TextDataset, SeededShuffleIsDeterministicPerEpoch) {
  TempFiles tmp;
  std::string path = tmp.Write("d.jsonl", NumberedJsonl(50));
  auto open = [&](uint64_t seed, size_t buffer) {
    TextDatasetOptions o;
    o.path = path;
    o.max_seq_len = 16;
    o.seed = seed;
    o.shuffle_buffer_size = buffer;
    auto d = TextDataset::Open(o);
    EXPECT_TRUE(d.ok()) << d.status();
    return std::move(*d);
  };
  auto d1 = open(5, 20);
  auto d2 = open(5, 20);
  std::vector<std::string> a = ReadTexts(*d1, 100);
  EXPECT_EQ(a, ReadTexts(*d2, 100));
  EXPECT_EQ(d1->epoch(), 1);
  std::vector<std::string> epoch0(a.begin(), a.begin() + 50), epoch1(a.begin() + 50, a.end());
  EXPECT_NE(epoch0, epoch1);  // each epoch has its own order
  std::sort(epoch0.begin(), epoch0.end());
  std::sort(epoch1.begin(), epoch1.end());
  EXPECT_EQ(epoch0, epoch1);  // ... of the same 50 examples
  EXPECT_NE(a, ReadTexts(*open(6, 20), 100));
  std::vector<std::string> in_order = ReadTexts(*open(5, 1), 3);
  EXPECT_EQ(in_order, (std::vector<std::string>{"0", "1", "2"}));
}

TEST(TextDataset, CountsAndValidatesUpFront) {
  TempFiles tmp;
  // Lengths with <bos>/<eos>: 5, 4 and 9 truncated to max_seq_len 6.
  std::string path = tmp.Write("c.jsonl", "{\"text\": \"abc\"}\n{\"text\": \"de\"}\n{\"text\": \"fghijkl\"}\n");
  TextDatasetOptions o;
  o.path = path;
  o.max_seq_len = 6;
  auto d = TextDataset::Open(o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->stats().num_examples, 3);
  EXPECT_EQ((*d)->stats().num_tokens, 5 + 4 + 6);
  EXPECT_EQ((*d)->stats().num_packed_rows, 3);  // 5 | 4 | 6: no two fit one row of 6

  std::string bad = tmp.Write("b.jsonl", "{\"text\": \"ok\"}\n{\"text\": 1}\n");
  o.path = bad;
  auto e = TextDataset::Open(o);
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(Contains(e.status(), bad + ":2:")) << e.status();

  o.path = tmp.Write("e.jsonl", "\n\n");
  auto empty = TextDataset::Open(o);
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(Contains(empty.status(), "no examples")) << empty.status();
}

}  // namespace
}  // namespace foak
