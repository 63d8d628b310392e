#include "client/format.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/errors.h"
#include "google/protobuf/util/json_util.h"

namespace foak::client {

using foak::v1::Job;

std::string FormatAge(absl::Duration d) {
  const int64_t s = d < absl::ZeroDuration() ? 0 : absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrCat(s / 60, "m");
  if (s < 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string FormatEta(absl::Duration d) {
  const int64_t s = d < absl::ZeroDuration() ? 0 : absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string FormatThousands(int64_t n) {
  const bool negative = n < 0;
  // The magnitude as unsigned, so INT64_MIN does not overflow.
  const uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
  const std::string digits = absl::StrCat(magnitude);
  std::string out;
  const int len = static_cast<int>(digits.size());
  for (int i = 0; i < len; ++i) {
    if (i > 0 && (len - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return negative ? "-" + out : out;
}

std::string FormatLoss(double loss) { return absl::StrFormat("%.3f", loss); }

std::string StateName(Job::State state) {
  if (state == Job::STATE_UNSPECIFIED || !Job::State_IsValid(state)) return "UNKNOWN";
  return Job::State_Name(state);
}

absl::StatusOr<Job::State> ParseStateName(absl::string_view name) {
  Job::State state;
  if (Job::State_Parse(absl::AsciiStrToUpper(name), &state) && state != Job::STATE_UNSPECIFIED) {
    return state;
  }
  std::vector<std::string> names;
  for (int s = Job::State_MIN; s <= Job::State_MAX; ++s) {
    if (Job::State_IsValid(s) && s != Job::STATE_UNSPECIFIED) {
      names.push_back(Job::State_Name(static_cast<Job::State>(s)));
    }
  }
  return UsageError(absl::StrCat("--state: '", name, "' is not a job state; use one of ",
                                 absl::StrJoin(names, ", ")));
}

bool IsFinalState(Job::State state) {
  return state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED;
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  if (!IsSet(ts)) return absl::InfinitePast();
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

bool IsSet(const google::protobuf::Timestamp& ts) { return ts.seconds() != 0 || ts.nanos() != 0; }

std::string FormatTimestamp(const google::protobuf::Timestamp& ts, absl::TimeZone tz) {
  if (!IsSet(ts)) return "";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", ToTime(ts), tz);
}

std::string FormatClock(const google::protobuf::Timestamp& ts, absl::TimeZone tz) {
  if (!IsSet(ts)) return "";
  return absl::FormatTime("%H:%M:%S", ToTime(ts), tz);
}

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = pretty;
  std::string out;
  // Printing a valid message to JSON cannot fail short of a non-UTF-8 string;
  // the partial output is still the best we can show then.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace foak::client
