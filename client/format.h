// Text formatting shared by foakctl's commands: ages and durations the way
// kubectl prints them, byte sizes in binary units, thousands separators, job
// state names, timestamps in the local time zone, and proto JSON output.
//
// Everything here is a pure function of its arguments (the current time and
// time zone are passed in) so the formats are unit-tested exactly.
#ifndef FOAK_CLIENT_FORMAT_H_
#define FOAK_CLIENT_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "foak/v1/job_service.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace foak::client {

// kubectl's AGE column with one unit: "5s", "3m", "2h", "4d" (floored;
// negative durations, from clock skew, print "0s").
std::string FormatAge(absl::Duration d);

// A remaining time with two units: "45s", "1m12s", "2h03m", "3d04h".
std::string FormatEta(absl::Duration d);

// Bytes in binary units: "512 B", "1.0 KiB", "1.2 GiB".
std::string FormatBytes(int64_t bytes);

// An integer with thousands separators: 1234567 -> "1,234,567".
std::string FormatThousands(int64_t n);

// A loss with three decimals ("2.013").
std::string FormatLoss(double loss);

// "RUNNING", ...; STATE_UNSPECIFIED prints "UNKNOWN".
std::string StateName(foak::v1::Job::State state);

// Parses a state name, case-insensitively ("running", "RUNNING"). A usage
// error lists the names when it is none of them.
absl::StatusOr<foak::v1::Job::State> ParseStateName(absl::string_view name);

// SUCCEEDED, FAILED or CANCELLED.
bool IsFinalState(foak::v1::Job::State state);

// An unset timestamp (0) is absl::InfinitePast().
absl::Time ToTime(const google::protobuf::Timestamp& ts);
bool IsSet(const google::protobuf::Timestamp& ts);

// "2024-05-01 12:03:04" in `tz`; "" for an unset timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts, absl::TimeZone tz);

// "12:03:04" in `tz`; "" for an unset timestamp.
std::string FormatClock(const google::protobuf::Timestamp& ts, absl::TimeZone tz);

// Proto JSON with the .proto field names (snake_case) and enum names.
// `pretty` indents over several lines; otherwise one line (JSON lines).
std::string ToJson(const google::protobuf::Message& message, bool pretty);

}  // namespace foak::client

#endif  // FOAK_CLIENT_FORMAT_H_
