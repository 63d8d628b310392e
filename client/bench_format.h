// How a benchmark job's rows (foak.v1.BenchResult, one per kernel set and
// shape) read: the live line `foakctl watch` and `foakctl bench` print as a
// row arrives, the results table (plain text or GitHub markdown), and the
// JSON line of `foakctl bench -o json`.
//
// The JSON line has exactly the field names and order of the worker's
// bench.jsonl (BenchResultToJson, worker/train/bench_result.h) with integers
// as JSON numbers (not proto JSON's int64 strings) and pct_change null when
// absent, so one script reads either file. Pure functions of the rows, so
// tests compare exact text.
#ifndef FOAK_CLIENT_BENCH_FORMAT_H_
#define FOAK_CLIENT_BENCH_FORMAT_H_

#include <string>
#include <vector>

#include "foak/v1/job_service.pb.h"

namespace foak::client {

// "foak  4 x 2048  67,890 tok/s  +34.2%  peak 12.34 GiB"; a row that did not
// run: "all  16 x 2048  out of memory: <the first line of its error>". A
// max-batch row reads "24 (max) x 2048".
std::string BenchRowText(const foak::v1::BenchResult& row);

// The table's columns: model, method, kernels, GPUs, batch, seq, tokens/s,
// % change, peak GiB.
std::vector<std::string> BenchTableHeader();

// One row of the table: tokens/s with thousands separators (or the status,
// "out of memory", when the row did not run), % change with a sign and one
// decimal (empty for the baseline kernel set), peak GiB = peak allocated
// bytes / 2^30 with two decimals.
std::vector<std::string> BenchTableRow(const foak::v1::BenchResult& row);

// The rows as a GitHub markdown table (header, separator, one line per row;
// numeric columns right-aligned).
std::string BenchMarkdownTable(const std::vector<foak::v1::BenchResult>& rows);

// One bench.jsonl line (no newline).
std::string BenchRowJson(const foak::v1::BenchResult& row);

}  // namespace foak::client

#endif  // FOAK_CLIENT_BENCH_FORMAT_H_
