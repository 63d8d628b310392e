// Tests of worker/data's ExampleDataset (formats, auto-detection, bad lines,
// splits, shuffling, resume) and the labelled Batcher (packing, padding).
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/data_test_util.h"
#include "worker/data/batcher.h"
#include "worker/data/example_dataset.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {
namespace {

using testing_data::Contains;
using testing_data::FakeTokenizer;
using testing_data::TempDir;
using testing_data::TrainedText;
using Ids = std::vector<int64_t>;
constexpr int64_t kIgn = kIgnoreIndex;

// "<s>" = 256 BOS, "</s>" = 257 EOS, as the byte tokenizer.
const FakeTokenizer& ByteLike() {
  static const auto* tok = new FakeTokenizer("<s>", "</s>", true, true);
  return *tok;
}

DatasetOptions Options(const std::string& path) {
  DatasetOptions o;
  o.path = path;
  o.encoder.chat_template = *BuiltinChatTemplate("plain");
  o.encoder.max_seq_len = 64;
  o.shuffle_buffer_size = 1000;
  return o;
}

std::string ChatLine(const std::string& user, const std::string& assistant) {
  return absl::StrCat(R"({"messages": [{"role": "user", "content": ")", user,
                      R"("}, {"role": "assistant", "content": ")", assistant, R"("}]})", "\n");
}

// N chat lines whose answers are "0", "1", ... so examples can be identified.
std::string NumberedChats(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += ChatLine("q", std::to_string(i));
  return out;
}

// The answer an example of NumberedChats trains on ("7" from "7</s>").
std::string Answer(const Example& e) {
  std::string t = TrainedText(ByteLike(), e);
  return t.substr(0, t.find("</s>"));
}

std::unique_ptr<ExampleDataset> MustOpen(const DatasetOptions& o) {
  auto d = ExampleDataset::Open(o, &ByteLike());
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? std::move(*d) : nullptr;
}

// One full epoch's answers, via NextInEpoch.
std::vector<std::string> EpochAnswers(ExampleDataset& d) {
  std::vector<std::string> out;
  while (true) {
    auto e = d.NextInEpoch();
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok() || !e->has_value()) break;
    out.push_back(Answer(**e));
  }
  return out;
}

TEST(ExampleDataset, AutoDetectsEachFormat) {
  TempDir tmp;
  struct Case {
    std::string line;
    DataFormat format;
    std::string trained;
  };
  const std::vector<Case> cases = {
      {R"({"text": "hi"})", DataFormat::kText, "hi</s>"},
      {R"({"instruction": "I", "output": "O"})", DataFormat::kAlpaca, "O</s>"},
      {R"({"prompt": "P", "completion": "C"})", DataFormat::kPromptCompletion, "C</s>"},
      {ChatLine("U", "A"), DataFormat::kChat, "A</s>"},
  };
  for (const Case& c : cases) {
    DatasetOptions o = Options(tmp.Write("a.jsonl", "\n" + c.line + "\n"));
    o.encoder.max_seq_len = 512;  // the Alpaca prompt alone is ~150 bytes
    auto d = MustOpen(o);
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->stats().format, c.format) << c.line;
    auto e = d->Next();
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(TrainedText(ByteLike(), *e), c.trained);
  }
}

TEST(ExampleDataset, AutoRejectsALaterLineOfAnotherShape) {
  TempDir tmp;
  const std::string path =
      tmp.Write("mixed.jsonl", ChatLine("a", "b") + "\n" + R"({"text": "x"})" + "\n");
  auto d = ExampleDataset::Open(Options(path), &ByteLike());
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(d.status(), path + ":3: missing field \"messages\" (keys: [text])"))
      << d.status();
  EXPECT_TRUE(Contains(d.status(), "format chat was detected from line 1")) << d.status();
}

TEST(ExampleDataset, ExplicitFormatIsEnforced) {
  TempDir tmp;
  DatasetOptions o = Options(tmp.Write("t.jsonl", ChatLine("a", "b")));
  o.format = DataFormat::kText;
  auto d = ExampleDataset::Open(o, &ByteLike());
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(d.status(), ":1: missing field \"text\"")) << d.status();
}

TEST(ExampleDataset, BadLinesFailNamingTheLineOrAreSkippedAndCounted) {
  TempDir tmp;
  const std::string contents = ChatLine("q", "0") + "{not json\n" + ChatLine("q", "1") +
                               R"({"messages": [{"role": "user", "content": "only"}]})"
                               "\n" +
                               "{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\"}]}\n" +
                               R"({"messages": [{"role": "bot", "content": "x"}]})"
                               "\n" +
                               ChatLine("q", "2");
  const std::string path = tmp.Write("bad.jsonl", contents);
  auto fail = ExampleDataset::Open(Options(path), &ByteLike());
  ASSERT_FALSE(fail.ok());
  EXPECT_TRUE(Contains(fail.status(), path + ":2: invalid JSON")) << fail.status();

  DatasetOptions o = Options(path);
  o.skip_bad_lines = true;
  o.shuffle = false;
  auto d = MustOpen(o);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->stats().num_lines, 7);
  EXPECT_EQ(d->stats().num_bad_lines, 4);
  EXPECT_EQ(d->stats().num_examples, 3);
  ASSERT_EQ(d->stats().bad_line_errors.size(), 4u);
  EXPECT_TRUE(Contains(absl::InvalidArgumentError(d->stats().bad_line_errors[1]),
                       ":4: no assistant message"));
  EXPECT_TRUE(
      Contains(absl::InvalidArgumentError(d->stats().bad_line_errors[2]), ":5: invalid UTF-8"));
  EXPECT_TRUE(Contains(absl::InvalidArgumentError(d->stats().bad_line_errors[3]),
                       ":6: messages[0].role = 'bot'"));
  EXPECT_EQ(EpochAnswers(*d), (std::vector<std::string>{"0", "1", "2"}));
}

TEST(ExampleDataset, CountsTruncatedAndDropsExamplesWithNothingToTrain) {
  TempDir tmp;
  // Plain template: <s> "### User:\n" (1 + 10) + user + "\n\n### Assistant:\n" (2 + 15) + answer +
  // </s>.
  const std::string long_user(40, 'u');
  const std::string path =
      tmp.Write("t.jsonl", ChatLine("q", "short") + ChatLine(long_user, "cut off answer") +
                               ChatLine("u", std::string(40, 'a')));
  DatasetOptions o = Options(path);
  o.encoder.max_seq_len = 64;
  o.shuffle = false;
  auto d = MustOpen(o);
  ASSERT_NE(d, nullptr);
  // Line 2: 11 + 40 + 17 = 68 prompt tokens > 64: nothing left to train, dropped.
  // Line 3: 11 + 1 + 17 = 29 prompt tokens + 40 + 1: truncated to 64, keeps 35 answer bytes.
  EXPECT_EQ(d->stats().num_dropped, 1);
  EXPECT_EQ(d->stats().num_truncated, 1);
  EXPECT_EQ(d->stats().num_examples, 2);
  auto first = d->Next();
  auto second = d->Next();
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(Answer(*first), "short");
  EXPECT_EQ(second->size(), 64);
  EXPECT_EQ(TrainedText(ByteLike(), *second), std::string(35, 'a'));
}

TEST(ExampleDataset, ShuffleIsReproduciblePerEpochAndAPermutation) {
  TempDir tmp;
  const std::string path = tmp.Write("n.jsonl", NumberedChats(50));
  auto a = MustOpen(Options(path));
  auto b = MustOpen(Options(path));
  ASSERT_TRUE(a && b);
  std::vector<std::string> a0 = EpochAnswers(*a);
  ASSERT_TRUE(a->StartEpoch(1).ok());
  std::vector<std::string> a1 = EpochAnswers(*a);
  // b streams both epochs through Next().
  std::vector<std::string> b01;
  for (int i = 0; i < 100; ++i) b01.push_back(Answer(*b->Next()));
  EXPECT_EQ(std::vector<std::string>(b01.begin(), b01.begin() + 50), a0);
  EXPECT_EQ(std::vector<std::string>(b01.begin() + 50, b01.end()), a1);
  EXPECT_EQ(b->epoch(), 1);
  EXPECT_NE(a0, a1);  // each epoch has its own order
  std::vector<std::string> sorted = a0;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> all;
  for (int i = 0; i < 50; ++i) all.push_back(std::to_string(i));
  std::sort(all.begin(), all.end());
  EXPECT_EQ(sorted, all);
  DatasetOptions other = Options(path);
  other.seed = 7;
  auto c = MustOpen(other);
  EXPECT_NE(EpochAnswers(*c), a0);
}

TEST(ExampleDataset, ValidationSplitIsDisjointCompleteAndStable) {
  TempDir tmp;
  const std::string path = tmp.Write("n.jsonl", NumberedChats(1000));
  DatasetOptions train_o = Options(path);
  train_o.validation_split = 0.1;
  train_o.shuffle = false;
  DatasetOptions valid_o = train_o;
  valid_o.split = DataSplit::kValidation;
  auto train = MustOpen(train_o);
  auto valid = MustOpen(valid_o);
  ASSERT_TRUE(train && valid);
  std::vector<std::string> t = EpochAnswers(*train);
  std::vector<std::string> v = EpochAnswers(*valid);
  EXPECT_EQ(train->stats().num_examples, static_cast<int64_t>(t.size()));
  EXPECT_EQ(train->stats().num_other_split, static_cast<int64_t>(v.size()));
  EXPECT_EQ(t.size() + v.size(), 1000u);
  EXPECT_GT(v.size(), 60u);  // 100 expected; binomial sd ~9.5
  EXPECT_LT(v.size(), 140u);
  std::set<std::string> seen(t.begin(), t.end());
  for (const std::string& x : v) EXPECT_EQ(seen.count(x), 0u) << x << " is in both splits";
  seen.insert(v.begin(), v.end());
  EXPECT_EQ(seen.size(), 1000u);
  // The validation pass is finite, in file order, and the same every time.
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end(), [](const std::string& x, const std::string& y) {
    return std::stoi(x) < std::stoi(y);
  }));
  ASSERT_TRUE(valid->StartEpoch(0).ok());
  EXPECT_EQ(EpochAnswers(*valid), v);
  // Another seed holds out other lines.
  valid_o.seed = 43;
  auto other = MustOpen(valid_o);
  EXPECT_NE(EpochAnswers(*other), v);
  // A validation split of 0 is an error for the validation side.
  valid_o.validation_split = 0;
  EXPECT_FALSE(ExampleDataset::Open(valid_o, &ByteLike()).ok());
}

TEST(ExampleDataset, SkipResumesTheStreamExactly) {
  TempDir tmp;
  const std::string path = tmp.Write("n.jsonl", NumberedChats(30));
  DatasetOptions o = Options(path);
  o.shuffle_buffer_size = 8;  // a partial shuffle must replay too
  for (int64_t k : {0, 5, 29, 30, 31, 77}) {
    auto ref = MustOpen(o);
    auto resumed = MustOpen(o);
    ASSERT_TRUE(ref && resumed);
    for (int64_t i = 0; i < k; ++i) ASSERT_TRUE(ref->Next().ok());
    ASSERT_TRUE(resumed->Skip(k).ok());
    EXPECT_EQ(resumed->epoch(), ref->epoch() + (k > 0 && k % 30 == 0 ? 1 : 0)) << k;
    for (int i = 0; i < 40; ++i) {
      ASSERT_EQ(Answer(*resumed->Next()), Answer(*ref->Next())) << "k=" << k << " i=" << i;
    }
  }
}

TEST(ExampleDataset, NoticesTheFileChangingAtTheNextEpoch) {
  TempDir tmp;
  const std::string path = tmp.Write("n.jsonl", NumberedChats(3));
  auto d = MustOpen(Options(path));
  ASSERT_NE(d, nullptr);
  std::FILE* f = std::fopen(path.c_str(), "ab");  // in place: same file, new size
  ASSERT_NE(f, nullptr);
  std::fputs(ChatLine("q", "3").c_str(), f);
  std::fclose(f);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(d->Next().ok());  // the epoch as opened
  auto next = d->Next();
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(next.status(), "the file changed since training started")) << next.status();
}

TEST(ExampleDataset, EmptySplitIsAnErrorThatExplainsWhy) {
  TempDir tmp;
  const std::string path = tmp.Write("e.jsonl", "\n  \n");
  auto d = ExampleDataset::Open(Options(path), &ByteLike());
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(d.status(), "no usable examples in the training split (0 non-blank lines"))
      << d.status();
}

// ---- the labelled batcher ----

Example Ex(Ids ids, Ids labels) { return Example{std::move(ids), std::move(labels)}; }

TEST(Batcher, PackingKeepsExampleLabelsAndRestartsPositions) {
  // Prompt tokens (-100) stay masked; the first token of each example is masked.
  const Example a = Ex({256, 1, 2, 3, 257}, {kIgn, kIgn, kIgn, 3, 257});
  const Example b = Ex({256, 4, 257}, {kIgn, 4, 257});
  Batch batch = Batcher::PackExamples({{a, b}, {b}}, 9, 0);
  ASSERT_EQ(batch.B, 2);
  EXPECT_EQ(batch.input_ids, (Ids{256, 1, 2, 3, 257, 256, 4, 257, 0,  //
                                  256, 4, 257, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(batch.labels, (Ids{kIgn, kIgn, kIgn, 3, 257, kIgn, 4, 257, kIgn,  //
                               kIgn, 4, 257, kIgn, kIgn, kIgn, kIgn, kIgn, kIgn}));
  EXPECT_EQ(batch.position_ids, (Ids{0, 1, 2, 3, 4, 0, 1, 2, 0,  //
                                     0, 1, 2, 0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(batch.num_tokens, 11);
  EXPECT_EQ(batch.NumTargetTokens(), 2 + 2 + 2);
}

TEST(Batcher, PaddingKeepsExampleLabels) {
  const Example a = Ex({256, 1, 2, 257}, {kIgn, kIgn, 2, 257});
  const Example b = Ex({256, 5}, {kIgn, 5});
  Batch batch = Batcher::PadExamples({a, b}, 9);
  EXPECT_EQ(batch.T, 4);
  EXPECT_EQ(batch.input_ids, (Ids{256, 1, 2, 257, 256, 5, 9, 9}));
  EXPECT_EQ(batch.labels, (Ids{kIgn, kIgn, 2, 257, kIgn, 5, kIgn, kIgn}));
  EXPECT_EQ(batch.position_ids, (Ids{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(batch.num_tokens, 6);
}

TEST(Batcher, ResumingFromExamplesConsumedGivesTheSameBatches) {
  TempDir tmp;
  std::string contents;
  for (int i = 0; i < 40; ++i)
    contents += ChatLine(std::string(i % 7, 'q'), std::to_string(i * 37));
  DatasetOptions o = Options(tmp.Write("n.jsonl", contents));
  o.shuffle_buffer_size = 16;
  const BatcherOptions bo{/*batch_size=*/2, /*max_seq_len=*/64, /*packing=*/true, 0};
  auto ref_data = MustOpen(o);
  ASSERT_NE(ref_data, nullptr);
  Batcher ref = Batcher::FromExamples(bo, [&] { return ref_data->Next(); });
  std::vector<Batch> batches;
  int64_t consumed_after_3 = 0;
  for (int i = 0; i < 12; ++i) {  // runs past an epoch (40 examples)
    auto batch = ref.Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    batches.push_back(*batch);
    if (i == 2) consumed_after_3 = ref.examples_consumed();
  }
  auto resumed_data = MustOpen(o);
  ASSERT_TRUE(resumed_data->Skip(consumed_after_3).ok());
  Batcher resumed = Batcher::FromExamples(bo, [&] { return resumed_data->Next(); });
  for (int i = 3; i < 12; ++i) {
    auto batch = resumed.Next();
    ASSERT_TRUE(batch.ok());
    EXPECT_EQ(batch->input_ids, batches[i].input_ids) << i;
    EXPECT_EQ(batch->labels, batches[i].labels) << i;
    EXPECT_EQ(batch->position_ids, batches[i].position_ids) << i;
  }
}

TEST(Batcher, ValidationBatchesCoverOnePassWithAShortLastBatch) {
  TempDir tmp;
  DatasetOptions o = Options(tmp.Write("n.jsonl", NumberedChats(5)));
  o.shuffle = false;
  auto d = MustOpen(o);
  ASSERT_NE(d, nullptr);
  std::vector<int64_t> sizes;
  int64_t targets = 0;
  for (int pass = 0; pass < 2; ++pass) {
    ASSERT_TRUE(d->StartEpoch(0).ok());
    while (true) {
      auto batch = NextPaddedBatch([&] { return d->NextInEpoch(); }, 2, 0);
      ASSERT_TRUE(batch.ok());
      if (!batch->has_value()) break;
      sizes.push_back((*batch)->B);
      targets += (*batch)->NumTargetTokens();
    }
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{2, 2, 1, 2, 2, 1}));
  EXPECT_EQ(targets, 2 * d->stats().num_target_tokens);
}

// The demo's data (scripts/make_demo_dataset.py) with the real byte tokenizer
// and the debug model's default template, as the demo job reads it.
TEST(ExampleDataset, DemoArithmeticFilesLoadWithTheByteTokenizer) {
  std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  ASSERT_EQ(tok->special().bos_id, 256);
  ASSERT_EQ(tok->special().eos_id, 257);
  std::set<std::vector<int64_t>> train_ids;
  for (const char* name : {"arith_train.jsonl", "arith_valid.jsonl"}) {
    DatasetOptions o;
    o.path = std::string(FOAK_SOURCE_DIR) + "/examples/data/" + name;
    o.encoder.chat_template = *DefaultChatTemplate("llama", /*byte_tokenizer=*/true);
    o.encoder.max_seq_len = 128;
    o.shuffle = false;
    auto d = ExampleDataset::Open(o, tok.get());
    ASSERT_TRUE(d.ok()) << d.status();
    const DatasetStats& s = (*d)->stats();
    EXPECT_EQ(s.format, DataFormat::kChat);
    EXPECT_EQ(s.num_examples, std::string(name) == "arith_train.jsonl" ? 2000 : 200);
    EXPECT_EQ(s.num_bad_lines + s.num_truncated + s.num_dropped, 0);
    while (true) {
      auto e = (*d)->NextInEpoch();
      ASSERT_TRUE(e.ok()) << e.status();
      if (!e->has_value()) break;
      // Only the answer is trained: 1-3 digits, then <eos>.
      std::vector<int64_t> trained;
      for (int64_t label : (*e)->labels) {
        if (label != kIgnoreIndex) trained.push_back(label);
      }
      ASSERT_GE(trained.size(), 2u);
      ASSERT_LE(trained.size(), 4u);
      EXPECT_EQ(trained.back(), 257);
      EXPECT_EQ((*e)->input_ids.back(), 257);
      for (size_t i = 0; i + 1 < trained.size(); ++i) {
        EXPECT_TRUE(trained[i] >= '0' && trained[i] <= '9') << trained[i];
      }
      if (std::string(name) == "arith_train.jsonl") {
        train_ids.insert((*e)->input_ids);
      } else {
        EXPECT_EQ(train_ids.count((*e)->input_ids), 0u) << "a validation example is in train";
      }
    }
  }
}

}  // namespace
}  // namespace foak
