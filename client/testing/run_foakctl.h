// Runs foakctl in-process for tests, capturing what it prints, with options
// that keep retries and reconnects fast (milliseconds instead of seconds), a
// fixed working directory for the absolute-path rule, and UTC times.
#ifndef FOAK_CLIENT_TESTING_RUN_FOAKCTL_H_
#define FOAK_CLIENT_TESTING_RUN_FOAKCTL_H_

#include <string>
#include <vector>

#include "client/foakctl_main.h"

namespace foak::client::testing {

struct FoakctlResult {
  int code = -1;
  std::string out;
  std::string err;
};

// The working directory FastTestOptions() sets.
inline constexpr char kTestCwd[] = "/home/user/project";

FoakctlOptions FastTestOptions();

// Runs `foakctl args...` (args without the program name).
FoakctlResult RunFoakctl(const std::vector<std::string>& args, const FoakctlOptions& options);

}  // namespace foak::client::testing

#endif  // FOAK_CLIENT_TESTING_RUN_FOAKCTL_H_
