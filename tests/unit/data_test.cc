// Tests of worker/data: batch layouts (padding, packing with carried
// examples) and the shuffle buffer. Records, templates, masks and datasets are
// tested in data_template_test.cc and data_pipeline_test.cc, the byte
// tokenizer in tokenizer_test.cc.
#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/data/batcher.h"
#include "worker/data/shuffle_buffer.h"

namespace foak {
namespace {

using Ids = std::vector<int64_t>;
constexpr int64_t kBos = 256;  // the byte tokenizer's <bos>
constexpr int64_t kEos = 257;  // and <eos>
constexpr int64_t kIgn = kIgnoreIndex;

bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
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

}  // namespace
}  // namespace foak
