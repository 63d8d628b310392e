#include "worker/train/metrics_writer.h"

#include <cerrno>
#include <cmath>

#include "common/file_util.h"
#include "nlohmann/json.hpp"

namespace foak {

absl::StatusOr<std::unique_ptr<MetricsWriter>> MetricsWriter::Open(const std::string& path,
                                                                   std::FILE* echo) {
  std::FILE* file = std::fopen(path.c_str(), "ae");
  if (file == nullptr) return ErrnoStatus("cannot open metrics file", path, errno);
  return std::unique_ptr<MetricsWriter>(new MetricsWriter(path, file, echo));
}

MetricsWriter::~MetricsWriter() { std::fclose(file_); }

std::string MetricsWriter::ToJsonLine(const StepMetrics& m) {
  // An ordered object keeps the documented field order in the file.
  nlohmann::ordered_json j;
  j["step"] = m.step;
  j["loss"] = std::isfinite(m.loss) ? nlohmann::ordered_json(m.loss) : nullptr;
  j["learning_rate"] = m.learning_rate;
  j["grad_norm"] = std::isfinite(m.grad_norm) ? nlohmann::ordered_json(m.grad_norm) : nullptr;
  j["tokens"] = m.tokens;
  j["tokens_per_second"] = m.tokens_per_second;
  j["peak_memory_bytes"] = m.peak_memory_bytes;
  if (m.peak_reserved_bytes > 0) j["peak_reserved_bytes"] = m.peak_reserved_bytes;
  j["elapsed_s"] = m.elapsed_s;
  return j.dump();
}

std::string MetricsWriter::ToJsonLine(const EvalMetrics& m) {
  nlohmann::ordered_json j;
  j["step"] = m.step;
  j["eval_loss"] = std::isfinite(m.eval_loss) ? nlohmann::ordered_json(m.eval_loss) : nullptr;
  j["eval_tokens"] = m.eval_tokens;
  j["eval_examples"] = m.eval_examples;
  j["eval_s"] = m.eval_s;
  return j.dump();
}

absl::Status MetricsWriter::Write(const StepMetrics& metrics) { return WriteLine(ToJsonLine(metrics)); }
absl::Status MetricsWriter::Write(const EvalMetrics& metrics) { return WriteLine(ToJsonLine(metrics)); }

absl::Status MetricsWriter::WriteLine(const std::string& json) {
  const std::string line = json + "\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0) {
    return ErrnoStatus("cannot write metrics to", path_, errno);
  }
  if (echo_ != nullptr) {
    std::fputs(line.c_str(), echo_);
    std::fflush(echo_);
  }
  return absl::OkStatus();
}

}  // namespace foak
