// How a Job reads in the terminal: one row of `foakctl list` and the
// multi-line `foakctl get` view. Pure functions of the job and the current
// time, so tests compare exact text.
#ifndef FOAK_CLIENT_JOB_VIEW_H_
#define FOAK_CLIENT_JOB_VIEW_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "foak/v1/job_service.pb.h"

namespace foak::client {

// The header of `foakctl list`.
std::vector<std::string> JobTableHeader();

// ID, NAME, STATE, STEP (step/max), LOSS, TOKENS/S, AGE, REASON. A benchmark
// job's STEP counts its rows (done/planned) and its LOSS stays empty.
std::vector<std::string> JobTableRow(const foak::v1::Job& job, absl::Time now);

// The `foakctl get` view: "Field:  value" lines, empty fields left out (a
// benchmark job shows its settings and its progress in rows).
std::string JobDetails(const foak::v1::Job& job, absl::Time now, absl::TimeZone tz);

}  // namespace foak::client

#endif  // FOAK_CLIENT_JOB_VIEW_H_
