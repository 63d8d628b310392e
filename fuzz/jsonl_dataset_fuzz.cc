// Fuzzes the JSONL readers (worker/data): record parsing and format detection
// (record.h), chat templates and masking (example_encoder.h), and the dataset
// scan, split, shuffle and epoch logic (example_dataset.h). Dataset files are
// uploaded by users (foakctl upload) and read by every worker rank.
//
// The input is a whole JSONL file. Each line goes through DetectFormat and
// ParseRecord for every explicit format; then the file is opened as a dataset
// twice with the byte tokenizer: strict (format auto, the first bad line
// fails) and lenient (bad lines skipped, a validation split, the chatml
// template for instruction formats, a short max_seq_len). For an opened
// dataset every example of one epoch is read and checked: labels aligned with
// input_ids, labels either the token or -100, at most max_seq_len tokens, ids
// inside the vocabulary, and as many examples as stats() announced.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "worker/data/batch.h"
#include "worker/data/chat_template.h"
#include "worker/data/example_dataset.h"
#include "worker/data/record.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

void ParseLines(std::string_view text) {
  size_t start = 0;
  int64_t line = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view raw = text.substr(start, end - start);
    const std::string where = "fuzz.jsonl:" + std::to_string(++line) + ": ";
    (void)foak::DetectFormat(raw, where);
    for (foak::DataFormat f : {foak::DataFormat::kText, foak::DataFormat::kAlpaca,
                               foak::DataFormat::kPromptCompletion, foak::DataFormat::kChat}) {
      (void)foak::ParseRecord(raw, f, where);
    }
    start = end + 1;
  }
}

void ReadDataset(const foak::DatasetOptions& options, const foak::Tokenizer& tokenizer) {
  absl::StatusOr<std::unique_ptr<foak::ExampleDataset>> dataset =
      foak::ExampleDataset::Open(options, &tokenizer);
  foak::fuzz::Explain("ExampleDataset::Open", dataset.status());
  if (!dataset.ok()) return;
  const foak::DatasetStats& stats = (*dataset)->stats();
  FUZZ_CHECK(stats.num_examples >= 0 && stats.num_examples <= stats.num_lines);
  int64_t examples = 0;
  while (true) {
    absl::StatusOr<std::optional<foak::Example>> next = (*dataset)->NextInEpoch();
    FUZZ_CHECK(next.ok());  // the file did not change since Open scanned it
    if (!next->has_value()) break;
    const foak::Example& e = **next;
    FUZZ_CHECK(e.input_ids.size() == e.labels.size());
    FUZZ_CHECK(e.size() >= 1 && e.size() <= options.encoder.max_seq_len);
    for (size_t t = 0; t < e.input_ids.size(); ++t) {
      FUZZ_CHECK(e.input_ids[t] >= 0 && e.input_ids[t] < tokenizer.vocab_size());
      FUZZ_CHECK(e.labels[t] == e.input_ids[t] || e.labels[t] == foak::kIgnoreIndex);
    }
    ++examples;
  }
  FUZZ_CHECK(examples == stats.num_examples);
  // Resume: skip into the next epochs without tokenizing.
  FUZZ_CHECK((*dataset)->Skip(stats.num_examples + 1).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = foak::fuzz::AsText(data, size);
  ParseLines(text);

  static const std::unique_ptr<foak::Tokenizer> tokenizer = foak::MakeByteTokenizer();
  const std::string path = foak::fuzz::WriteScratchFile("data.jsonl", text);

  foak::DatasetOptions strict;
  strict.path = path;
  strict.encoder.chat_template = *foak::BuiltinChatTemplate("plain");
  strict.encoder.max_seq_len = 256;
  ReadDataset(strict, *tokenizer);

  foak::DatasetOptions lenient = strict;
  lenient.skip_bad_lines = true;
  lenient.validation_split = 0.3;
  lenient.shuffle_buffer_size = 3;
  lenient.packing_row_len = 16;
  lenient.encoder.chat_template = *foak::BuiltinChatTemplate("chatml");
  lenient.encoder.instructions_as_chat = true;
  lenient.encoder.max_seq_len = 12;
  ReadDataset(lenient, *tokenizer);
  lenient.split = foak::DataSplit::kValidation;
  lenient.encoder.train_on_prompt = true;
  ReadDataset(lenient, *tokenizer);
  return 0;
}
