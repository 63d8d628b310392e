// The small pieces of the Prometheus text exposition format 0.0.4 that every
// metric family needs: how a number, a label value and a help text are
// written, and which names are legal.
//
// Why hand-written and not a client library: foakd exports a dozen families
// and Debian 12 ships no C++ Prometheus client. The format is line based and
// tiny, but three details matter for Prometheus to parse a scrape at all, and
// these functions are where they are decided (and tested):
//  * numbers: Go's ParseFloat reads them, so "+Inf", "-Inf" and "NaN" are the
//    spellings of the non-finite values; integral values up to 2^53 (step
//    counts, byte counts, token counts) are written as plain integers so that
//    1234567 never turns into 1.234567e+06; everything else is the shortest
//    text that reads back to the same double.
//  * label values escape backslash, double quote and newline; help texts
//    escape backslash and newline only (a quote in help is literal).
//  * metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
//    [a-zA-Z_][a-zA-Z0-9_]* and must not start with "__" (reserved).
#ifndef FOAK_SERVER_METRICS_EXPOSITION_TEXT_H_
#define FOAK_SERVER_METRICS_EXPOSITION_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace foak {

// The exposition spelling of `value`: "+Inf", "-Inf", "NaN", "42", "-3",
// "0.1", "1e-07", "1.5e+300". Negative zero is written "0".
std::string FormatMetricValue(double value);

// `value` with \ -> \\, " -> \" and newline -> \n, ready to sit between the
// double quotes of a label pair.
std::string EscapeLabelValue(absl::string_view value);

// `help` with \ -> \\ and newline -> \n, for a "# HELP name text" line.
std::string EscapeHelp(absl::string_view help);

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidMetricName(absl::string_view name);

// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__".
bool IsValidLabelName(absl::string_view name);

}  // namespace foak

#endif  // FOAK_SERVER_METRICS_EXPOSITION_TEXT_H_
