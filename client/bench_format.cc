#include "client/bench_format.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "client/format.h"
#include "nlohmann/json.hpp"

namespace foak::client {
namespace {

using foak::v1::BenchResult;

bool Ran(const BenchResult& row) { return row.status() == "ok"; }

// "out_of_memory" -> "out of memory"; an empty status reads "unknown".
std::string StatusText(const BenchResult& row) {
  if (row.status().empty()) return "unknown";
  return absl::StrReplaceAll(row.status(), {{"_", " "}});
}

std::string BatchText(const BenchResult& row) {
  return row.max_batch() ? absl::StrCat(row.batch(), " (max)") : absl::StrCat(row.batch());
}

std::string TokensText(const BenchResult& row) {
  if (!Ran(row)) return StatusText(row);
  return FormatThousands(std::llround(row.tokens_per_second()));
}

std::string PctText(const BenchResult& row) {
  if (!Ran(row) || !row.has_pct_change()) return "";
  return absl::StrFormat("%+.1f%%", row.pct_change());
}

std::string PeakGiBText(const BenchResult& row) {
  if (!Ran(row) || row.peak_allocated_bytes() <= 0) return "";
  return absl::StrFormat("%.2f", static_cast<double>(row.peak_allocated_bytes()) / (1 << 30));
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

std::string BenchRowText(const BenchResult& row) {
  std::string line =
      absl::StrCat(row.kernels().empty() ? "none" : row.kernels(), "  ", BatchText(row), " x ",
                   row.seq());
  if (!Ran(row)) {
    absl::StrAppend(&line, "  ", StatusText(row));
    if (!row.error().empty()) absl::StrAppend(&line, ": ", FirstLine(row.error()));
    return line;
  }
  absl::StrAppend(&line, "  ", TokensText(row), " tok/s");
  if (const std::string pct = PctText(row); !pct.empty()) absl::StrAppend(&line, "  ", pct);
  if (const std::string peak = PeakGiBText(row); !peak.empty()) {
    absl::StrAppend(&line, "  peak ", peak, " GiB");
  }
  return line;
}

std::vector<std::string> BenchTableHeader() {
  return {"model", "method", "kernels", "GPUs", "batch", "seq", "tokens/s", "% change", "peak GiB"};
}

std::vector<std::string> BenchTableRow(const BenchResult& row) {
  return {row.model(),           row.method(),   row.kernels(),
          absl::StrCat(row.gpus()), BatchText(row), absl::StrCat(row.seq()),
          TokensText(row),       PctText(row),   PeakGiBText(row)};
}

std::string BenchMarkdownTable(const std::vector<BenchResult>& rows) {
  // Right-aligned: GPUs, batch, seq, tokens/s, % change, peak GiB.
  const std::vector<std::string> header = BenchTableHeader();
  std::string out = absl::StrCat("| ", absl::StrJoin(header, " | "), " |\n|");
  for (size_t c = 0; c < header.size(); ++c) out += c < 3 ? " --- |" : " ---: |";
  out += "\n";
  for (const BenchResult& row : rows) {
    std::vector<std::string> cells = BenchTableRow(row);
    // A '|' inside a cell would end it.
    for (std::string& cell : cells) cell = absl::StrReplaceAll(cell, {{"|", "\\|"}});
    absl::StrAppend(&out, "| ", absl::StrJoin(cells, " | "), " |\n");
  }
  return out;
}

std::string BenchRowJson(const BenchResult& r) {
  // The order and names of BenchResultToJson (worker/train/bench_result.cc).
  nlohmann::ordered_json j = {
      {"index", r.index()},
      {"total", r.total()},
      {"framework", r.framework()},
      {"model", r.model()},
      {"method", r.method()},
      {"kernels", r.kernels()},
      {"gpus", r.gpus()},
      {"batch", r.batch()},
      {"seq", r.seq()},
      {"precision", r.precision()},
      {"activation_checkpointing", r.activation_checkpointing()},
      {"status", r.status()},
      {"error", r.error()},
      {"tokens_per_second", r.tokens_per_second()},
      {"pct_change", r.has_pct_change() ? nlohmann::ordered_json(r.pct_change())
                                        : nlohmann::ordered_json(nullptr)},
      {"ms_per_step", r.ms_per_step()},
      {"peak_allocated_bytes", r.peak_allocated_bytes()},
      {"peak_reserved_bytes", r.peak_reserved_bytes()},
      {"loss_first", r.loss_first()},
      {"loss_last", r.loss_last()},
      {"warmup_steps", r.warmup_steps()},
      {"steps", r.steps()},
      {"max_batch", r.max_batch()},
      {"device", r.device()},
  };
  // Strings from gRPC are valid UTF-8; replace rather than throw regardless.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace foak::client
