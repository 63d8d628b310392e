#include "worker/parallel/dist_env.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace foak {
namespace {

using GetEnv = std::function<std::optional<std::string>(const char*)>;

// An integer variable in [lo, hi]; `fallback` when unset or empty.
absl::StatusOr<int64_t> IntVar(const GetEnv& getenv, const char* name, int64_t lo, int64_t hi,
                               std::optional<int64_t> fallback, const std::string& why) {
  std::optional<std::string> value = getenv(name);
  if (!value.has_value() || value->empty()) {
    if (fallback.has_value()) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat(name, " is not set; ", why));
  }
  int64_t v = 0;
  if (!absl::SimpleAtoi(*value, &v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(absl::StrCat(name, " = '", *value, "'; expected an integer in [",
                                                   lo, ", ", hi, "]"));
  }
  return v;
}

}  // namespace

std::string DistEnv::Describe() const {
  if (!distributed()) return "a single rank";
  return absl::StrCat("rank ", rank, " of ", world_size, " (local rank ", local_rank,
                      "), rendezvous at ", master_addr, ":", master_port);
}

absl::StatusOr<DistEnv> ReadDistEnv(const GetEnv& getenv) {
  constexpr int64_t kMaxWorld = 1 << 20;
  DistEnv env;
  auto world = IntVar(getenv, "WORLD_SIZE", 1, kMaxWorld, 1, "");
  if (!world.ok()) return world.status();
  env.world_size = static_cast<int>(*world);
  if (env.world_size == 1) {
    // RANK may still be given (foakd sets RANK=0 for a one-rank job).
    auto rank = IntVar(getenv, "RANK", 0, 0, 0, "");
    if (!rank.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(rank.status().message(), " (WORLD_SIZE is 1 or unset, so RANK must be 0)"));
    }
    return env;
  }
  const std::string need = absl::StrCat("WORLD_SIZE = ", env.world_size,
                                        " needs RANK, MASTER_ADDR and MASTER_PORT, as torchrun sets them");
  auto rank = IntVar(getenv, "RANK", 0, env.world_size - 1, std::nullopt, need);
  if (!rank.ok()) return rank.status();
  env.rank = static_cast<int>(*rank);
  auto local_world = IntVar(getenv, "LOCAL_WORLD_SIZE", 1, env.world_size, env.world_size, "");
  if (!local_world.ok()) return local_world.status();
  env.local_world_size = static_cast<int>(*local_world);
  // LOCAL_RANK defaults to RANK on a single host.
  auto local_rank = IntVar(getenv, "LOCAL_RANK", 0, env.local_world_size - 1,
                           env.local_world_size == env.world_size
                               ? std::optional<int64_t>(env.rank)
                               : std::nullopt,
                           absl::StrCat("LOCAL_WORLD_SIZE = ", env.local_world_size,
                                        " < WORLD_SIZE, so each host's ranks need LOCAL_RANK"));
  if (!local_rank.ok()) return local_rank.status();
  env.local_rank = static_cast<int>(*local_rank);
  std::optional<std::string> addr = getenv("MASTER_ADDR");
  if (!addr.has_value() || addr->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("MASTER_ADDR is not set; ", need));
  }
  env.master_addr = *addr;
  auto port = IntVar(getenv, "MASTER_PORT", 1, 65535, std::nullopt, need);
  if (!port.ok()) return port.status();
  env.master_port = static_cast<uint16_t>(*port);
  return env;
}

absl::StatusOr<DistEnv> DistEnvFromEnvironment() {
  return ReadDistEnv([](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace foak
