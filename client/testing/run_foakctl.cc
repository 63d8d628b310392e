#include "client/testing/run_foakctl.h"

#include <sstream>

namespace foak::client::testing {

FoakctlOptions FastTestOptions() {
  FoakctlOptions options;
  options.retry_backoff = absl::Milliseconds(5);
  options.reconnect_backoff = absl::Milliseconds(5);
  options.reconnect_budget = absl::Seconds(5);
  options.cwd = kTestCwd;
  options.time_zone = absl::UTCTimeZone();
  return options;
}

FoakctlResult RunFoakctl(const std::vector<std::string>& args, const FoakctlOptions& options) {
  std::vector<std::string> full = {"foakctl"};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::ostringstream out, err;
  FoakctlResult r;
  r.code = FoakctlMain(static_cast<int>(full.size()), argv.data(), out, err, options);
  r.out = out.str();
  r.err = err.str();
  return r;
}

}  // namespace foak::client::testing
