#include "worker/data/example_dataset.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak {
namespace {

constexpr uint64_t kSplitSalt = 0x73706c6974ull;  // "split": keeps it apart from shuffle seeds
constexpr size_t kMaxBadLineErrors = 10;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

absl::Status FileIdentity(std::FILE* file, const std::string& path, int64_t* size,
                          int64_t* mtime_ns) {
  struct stat st;
  if (::fstat(::fileno(file), &st) != 0) return ErrnoStatus("cannot stat", path, errno);
  *size = static_cast<int64_t>(st.st_size);
  *mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000ll + st.st_mtim.tv_nsec;
  return absl::OkStatus();
}

}  // namespace

ExampleDataset::ExampleDataset(const DatasetOptions& options, std::FILE* file,
                               ExampleEncoder encoder)
    : options_(options), file_(file), encoder_(std::move(encoder)) {}

ExampleDataset::~ExampleDataset() {
  std::fclose(file_);
  std::free(line_buf_);
}

absl::StatusOr<std::unique_ptr<ExampleDataset>> ExampleDataset::Open(const DatasetOptions& options,
                                                                     const Tokenizer* tokenizer) {
  if (!(options.validation_split >= 0.0 && options.validation_split < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("validation_split = ", options.validation_split,
                                                   "; expected a fraction in [0, 1)"));
  }
  if (options.split == DataSplit::kValidation && options.validation_split == 0.0) {
    return absl::InvalidArgumentError(
        "a validation split needs validation_split > 0 (or a separate validation file)");
  }
  ASSIGN_OR_RETURN(ExampleEncoder encoder, ExampleEncoder::Create(options.encoder, tokenizer));
  std::FILE* file = std::fopen(options.path.c_str(), "rbe");
  if (file == nullptr) return ErrnoStatus("cannot open dataset", options.path, errno);
  auto dataset =
      std::unique_ptr<ExampleDataset>(new ExampleDataset(options, file, std::move(encoder)));
  RETURN_IF_ERROR(FileIdentity(file, options.path, &dataset->file_size_, &dataset->file_mtime_ns_));
  RETURN_IF_ERROR(dataset->ScanFile());
  RETURN_IF_ERROR(dataset->StartEpoch(0));
  return dataset;
}

std::string ExampleDataset::Where(int64_t line) const {
  return absl::StrCat(options_.path, ":", line, ": ");
}

bool ExampleDataset::InThisSplit(int64_t line) const {
  if (options_.validation_split <= 0.0) return options_.split == DataSplit::kTrain;
  const uint64_t h = MixSeed(options_.seed ^ kSplitSalt, static_cast<uint64_t>(line));
  // The top 53 bits as a uniform double in [0, 1).
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  const bool validation = u < options_.validation_split;
  return validation == (options_.split == DataSplit::kValidation);
}

absl::StatusOr<std::optional<ExampleDataset::RawLine>> ExampleDataset::ReadLine() {
  while (true) {
    errno = 0;
    ssize_t n = ::getline(&line_buf_, &line_cap_, file_);
    if (n < 0) {
      if (std::ferror(file_)) return ErrnoStatus("cannot read", options_.path, errno);
      return std::optional<RawLine>();
    }
    ++line_number_;
    std::string_view line(line_buf_, static_cast<size_t>(n));
    while (!line.empty() && IsSpace(line.back())) line.remove_suffix(1);
    while (!line.empty() && IsSpace(line.front())) line.remove_prefix(1);
    if (line.empty()) continue;
    return std::optional<RawLine>(RawLine{line_number_, std::string(line)});
  }
}

absl::StatusOr<std::optional<Example>> ExampleDataset::EncodeLine(const RawLine& raw,
                                                                  std::string* error,
                                                                  bool* truncated) {
  absl::StatusOr<Record> record = ParseRecord(raw.text, format_, Where(raw.line));
  if (!record.ok()) {
    std::string message(record.status().message());
    if (options_.format == DataFormat::kAuto) {
      absl::StrAppend(&message, " (format ", DataFormatName(format_), " was detected from line ",
                      format_line_, ")");
    }
    *error = std::move(message);
    return std::optional<Example>();
  }
  EncodeResult result = encoder_.Encode(*record);
  *truncated = result.truncated;
  return std::move(result.example);
}

absl::Status ExampleDataset::ScanFile() {
  format_ = options_.format;
  int64_t row_fill = 0;
  const int64_t row_len = options_.packing_row_len;
  auto bad_line = [this](std::string error) -> absl::Status {
    if (!options_.skip_bad_lines) return absl::InvalidArgumentError(error);
    ++stats_.num_bad_lines;
    if (stats_.bad_line_errors.size() < kMaxBadLineErrors) {
      stats_.bad_line_errors.push_back(std::move(error));
    }
    return absl::OkStatus();
  };
  keep_.assign(1, false);
  while (true) {
    ASSIGN_OR_RETURN(std::optional<RawLine> raw, ReadLine());
    if (!raw.has_value()) break;
    keep_.resize(static_cast<size_t>(raw->line) + 1, false);
    ++stats_.num_lines;
    const bool mine = InThisSplit(raw->line);
    if (format_ == DataFormat::kAuto) {
      // Both splits detect from the same line, whichever split it is in.
      absl::StatusOr<DataFormat> detected = DetectFormat(raw->text, Where(raw->line));
      if (!detected.ok()) {
        if (!mine && options_.skip_bad_lines) {
          ++stats_.num_other_split;
        } else {
          RETURN_IF_ERROR(bad_line(std::string(detected.status().message())));
        }
        continue;
      }
      format_ = *detected;
      format_line_ = raw->line;
    }
    if (!mine) {
      ++stats_.num_other_split;
      continue;
    }
    std::string error;
    bool truncated = false;
    ASSIGN_OR_RETURN(std::optional<Example> example, EncodeLine(*raw, &error, &truncated));
    if (!error.empty()) {
      RETURN_IF_ERROR(bad_line(std::move(error)));
      continue;
    }
    if (!example.has_value()) {
      ++stats_.num_dropped;
      continue;
    }
    keep_[static_cast<size_t>(raw->line)] = true;
    ++stats_.num_examples;
    stats_.num_truncated += truncated;
    stats_.num_tokens += example->size();
    stats_.num_target_tokens += example->NumTargets();
    if (row_len > 0) {
      if (row_fill + example->size() > row_len) {
        ++stats_.num_packed_rows;
        row_fill = 0;
      }
      row_fill += example->size();
    }
  }
  if (row_fill > 0) ++stats_.num_packed_rows;
  stats_.format = format_;
  if (stats_.num_examples == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        options_.path, ": no usable examples in the ",
        options_.split == DataSplit::kTrain ? "training" : "validation", " split (",
        stats_.num_lines, " non-blank lines, ", stats_.num_other_split, " in the other split, ",
        stats_.num_bad_lines, " malformed and skipped, ", stats_.num_dropped,
        " with nothing left to train after truncation to max_seq_len = ",
        options_.encoder.max_seq_len, ")"));
  }
  return absl::OkStatus();
}

absl::Status ExampleDataset::StartEpoch(int64_t epoch) {
  int64_t size = 0, mtime_ns = 0;
  RETURN_IF_ERROR(FileIdentity(file_, options_.path, &size, &mtime_ns));
  if (size != file_size_ || mtime_ns != file_mtime_ns_) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.path,
                     ": the file changed since training started; the data order, the "
                     "validation split and resuming rely on it staying the same"));
  }
  if (std::fseek(file_, 0, SEEK_SET) != 0)
    return ErrnoStatus("cannot rewind", options_.path, errno);
  std::clearerr(file_);
  line_number_ = 0;
  reader_done_ = false;
  epoch_ = epoch;
  examples_in_epoch_ = 0;
  const size_t capacity = options_.shuffle ? options_.shuffle_buffer_size : 0;
  shuffle_ = std::make_unique<ShuffleBuffer<RawLine>>(
      capacity, MixSeed(options_.seed, static_cast<uint64_t>(epoch)));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ExampleDataset::RawLine>> ExampleDataset::NextRaw() {
  while (!reader_done_) {
    ASSIGN_OR_RETURN(std::optional<RawLine> raw, ReadLine());
    if (!raw.has_value()) {
      reader_done_ = true;
      break;
    }
    const size_t line = static_cast<size_t>(raw->line);
    if (line >= keep_.size() || !keep_[line]) continue;
    std::optional<RawLine> out = shuffle_->Push(std::move(*raw));
    if (out.has_value()) return out;
  }
  return shuffle_->Pop();
}

absl::StatusOr<std::optional<Example>> ExampleDataset::NextInEpoch() {
  ASSIGN_OR_RETURN(std::optional<RawLine> raw, NextRaw());
  if (!raw.has_value()) return std::optional<Example>();
  std::string error;
  bool truncated = false;
  ASSIGN_OR_RETURN(std::optional<Example> example, EncodeLine(*raw, &error, &truncated));
  if (!example.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        Where(raw->line), "the line gave an example when the dataset was opened but not now (",
        error.empty() ? "no trained token" : error, "); was the file changed while training?"));
  }
  ++examples_in_epoch_;
  return example;
}

absl::StatusOr<Example> ExampleDataset::Next() {
  ASSIGN_OR_RETURN(std::optional<Example> example, NextInEpoch());
  if (example.has_value()) return std::move(*example);
  RETURN_IF_ERROR(StartEpoch(epoch_ + 1));
  ASSIGN_OR_RETURN(example, NextInEpoch());
  if (!example.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.path, ": epoch ", epoch_, " has no examples"));
  }
  return std::move(*example);
}

absl::Status ExampleDataset::Skip(int64_t n) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("Skip(", n, "): n must be >= 0"));
  const int64_t per_epoch = stats_.num_examples;
  const int64_t left = per_epoch - examples_in_epoch_;
  if (n >= left) {
    n -= left;
    RETURN_IF_ERROR(StartEpoch(epoch_ + 1 + n / per_epoch));
    n %= per_epoch;
  }
  for (int64_t i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(std::optional<RawLine> raw, NextRaw());
    if (!raw.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          options_.path, ": epoch ", epoch_, " ended early while skipping; was the file changed?"));
    }
    ++examples_in_epoch_;
  }
  return absl::OkStatus();
}

}  // namespace foak
