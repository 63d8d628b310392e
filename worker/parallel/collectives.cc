#include "worker/parallel/collectives.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/torch_compat_c10d.h"

namespace foak {

struct InProcessStore {
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::HashStore>();
};

struct Collectives::State {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<compat::C10dBackend> backend;
};

namespace {

const char* BackendName(CollectiveBackend b) { return b == CollectiveBackend::kNccl ? "nccl" : "gloo"; }

absl::Status CheckOptions(const CollectivesOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("collectives: rank ", o.rank, " with world size ",
                                                   o.world_size, "; need 0 <= rank < world size"));
  }
  return absl::OkStatus();
}

absl::StatusOr<c10::intrusive_ptr<compat::C10dBackend>> MakeBackend(
    const CollectivesOptions& o, const c10::intrusive_ptr<c10d::Store>& store) {
  switch (o.backend) {
    case CollectiveBackend::kGloo:
#if FOAK_HAVE_GLOO
      return compat::MakeGlooBackend(store, o.rank, o.world_size, o.timeout);
#else
      break;
#endif
    case CollectiveBackend::kNccl:
#if defined(USE_C10D_NCCL)
      return compat::MakeNcclBackend(store, o.rank, o.world_size, o.timeout);
#else
      break;
#endif
  }
  std::string available;
  for (const std::string& name : Collectives::AvailableBackends()) {
    absl::StrAppend(&available, available.empty() ? "" : ", ", name);
  }
  return absl::UnimplementedError(absl::StrCat("collectives: backend '", BackendName(o.backend),
                                               "' is not in this build; available: ",
                                               available.empty() ? "none" : available));
}

absl::Status Failed(const char* what, const std::exception& e) {
  return absl::InternalError(absl::StrCat("collectives: ", what, " failed: ", e.what()));
}

std::string ArrivalKey(int rank) { return absl::StrCat("foak/rendezvous/rank/", rank); }
constexpr char kVerdictKey[] = "foak/rendezvous/missing";

// Every rank writes its key, then waits until all keys exist. Rank 0 serves
// the store, so it decides: at the deadline it writes which ranks are missing
// and lingers a moment so the ranks that did come read that verdict before
// its store goes away; the others give it a few seconds' grace.
absl::Status Rendezvous(c10d::Store& store, const CollectivesOptions& o) {
  using Clock = std::chrono::steady_clock;
  const std::chrono::milliseconds grace(o.rank == 0 ? 0 : 5000);
  const auto seconds = std::chrono::duration<double>(o.timeout).count();
  auto missing_error = [&](const std::string& missing) {
    return absl::DeadlineExceededError(absl::StrCat(
        "rendezvous at ", o.store_address, ": ", missing, " of ", o.world_size,
        " did not arrive within ", seconds, " s (this is rank ", o.rank,
        "); every rank must be started with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE"));
  };
  try {
    store.set(ArrivalKey(o.rank), std::vector<uint8_t>{'1'});
    std::vector<std::string> keys;
    for (int r = 0; r < o.world_size; ++r) keys.push_back(ArrivalKey(r));
    const Clock::time_point deadline = Clock::now() + o.timeout + grace;
    auto pause = std::chrono::milliseconds(1);
    while (!store.check(keys)) {
      if (o.rank != 0 && store.check({kVerdictKey})) {
        const std::vector<uint8_t> v = store.get(kVerdictKey);
        return missing_error(std::string(v.begin(), v.end()));
      }
      if (Clock::now() >= deadline) {
        std::vector<int> missing;
        for (int r = 0; r < o.world_size; ++r) {
          if (!store.check({ArrivalKey(r)})) missing.push_back(r);
        }
        const std::string verdict = absl::StrCat(missing.size() == 1 ? "rank " : "ranks ",
                                                 absl::StrJoin(missing, ", "));
        if (o.rank == 0) {
          store.set(kVerdictKey, std::vector<uint8_t>(verdict.begin(), verdict.end()));
          std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        }
        return missing_error(verdict);
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "rendezvous at ", o.store_address, " (rank ", o.rank, "): ", e.what(),
        o.rank == 0 ? "" : "; rank 0, which serves the store, may have failed or exited"));
  }
  return absl::OkStatus();
}

// A collective that has already completed (done synchronously).
class DoneWork : public CollectiveWork {
 public:
  absl::Status Wait() override { return absl::OkStatus(); }
};

// Gloo sums no bf16 or fp16: it gets an fp32 copy (CPU runs, tests).
bool GlooNeedsFloat(CollectiveBackend backend, const at::Tensor& t) {
  return backend == CollectiveBackend::kGloo &&
         (t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf);
}

// A started c10d collective.
class C10dWork : public CollectiveWork {
 public:
  explicit C10dWork(c10::intrusive_ptr<c10d::Work> work) : work_(std::move(work)) {}
  absl::Status Wait() override {
    try {
      work_->wait();
    } catch (const std::exception& e) {
      return Failed("waiting for a collective", e);
    }
    return absl::OkStatus();
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
};

}  // namespace

std::vector<std::string> Collectives::AvailableBackends() {
  std::vector<std::string> names;
#if FOAK_HAVE_GLOO
  names.push_back("gloo");
#endif
#if defined(USE_C10D_NCCL)
  names.push_back("nccl");
#endif
  return names;
}

absl::StatusOr<std::unique_ptr<Collectives>> Collectives::Join(const CollectivesOptions& options,
                                                               std::unique_ptr<State> state) {
  if (options.world_size > 1) {
    if (absl::Status s = Rendezvous(*state->store, options); !s.ok()) return s;
  }
  absl::StatusOr<c10::intrusive_ptr<compat::C10dBackend>> backend;
  try {
    backend = MakeBackend(options, state->store);
  } catch (const std::exception& e) {
    return Failed("creating the process group", e);
  }
  if (!backend.ok()) return backend.status();
  state->backend = *std::move(backend);
  return std::unique_ptr<Collectives>(new Collectives(options, std::move(state)));
}

std::shared_ptr<InProcessStore> Collectives::MakeInProcessStore() {
  return std::make_shared<InProcessStore>();
}

Collectives::Collectives(const CollectivesOptions& options, std::unique_ptr<State> state)
    : options_(options), state_(std::move(state)) {}

Collectives::~Collectives() {
  if (state_ && state_->backend) {
    try {
      compat::ShutdownBackend(*state_->backend);
    } catch (const std::exception&) {
      // Shutting down must not throw out of a destructor.
    }
  }
}

absl::StatusOr<std::unique_ptr<Collectives>> Collectives::CreateWithTcpStore(
    const CollectivesOptions& options, const std::string& host, uint16_t port) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  auto state = std::make_unique<State>();
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = port;
    store_options.isServer = options.rank == 0;
    // No count of workers: Rendezvous waits for them and names the missing.
    store_options.waitWorkers = false;
    store_options.timeout = options.timeout;
    state->store = c10::make_intrusive<c10d::TCPStore>(host, store_options);
  } catch (const std::exception& e) {
    if (options.rank == 0) {
      return absl::UnavailableError(absl::StrCat(
          "rank 0 could not serve the rendezvous store on port ", port, " (", e.what(),
          "); pick a free MASTER_PORT"));
    }
    return absl::UnavailableError(absl::StrCat(
        "rank ", options.rank, " could not reach rank 0's rendezvous store at ", host, ":", port,
        " within ", std::chrono::duration<double>(options.timeout).count(),
        " s: rank 0 did not start, or MASTER_ADDR/MASTER_PORT point elsewhere (", e.what(), ")"));
  }
  CollectivesOptions o = options;
  o.store_address = absl::StrCat(host, ":", port);
  return Join(o, std::move(state));
}

absl::StatusOr<std::unique_ptr<Collectives>> Collectives::CreateFromEnv(const DistEnv& env,
                                                                        CollectivesOptions options) {
  options.rank = env.rank;
  options.world_size = env.world_size;
  return CreateWithTcpStore(options, env.master_addr, env.master_port);
}

absl::StatusOr<std::unique_ptr<Collectives>> Collectives::CreateInProcess(
    const CollectivesOptions& options, const std::shared_ptr<InProcessStore>& store) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  auto state = std::make_unique<State>();
  state->store = store->store;
  return Join(options, std::move(state));
}

absl::Status Collectives::AllReduceSum(std::vector<at::Tensor>& tensors) {
  for (at::Tensor& t : tensors) {
    if (!GlooNeedsFloat(options_.backend, t)) continue;
    std::vector<at::Tensor> wide = {t.to(at::kFloat)};
    if (absl::Status s = AllReduceSum(wide); !s.ok()) return s;
    t.copy_(wide[0]);
  }
  try {
    // One collective per tensor (c10d's multi-tensor form means one tensor
    // per local device, all of one shape); all are issued before any wait.
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (at::Tensor& t : tensors) {
      if (GlooNeedsFloat(options_.backend, t)) continue;  // summed above
      std::vector<at::Tensor> one = {t};
      works.push_back(state_->backend->allreduce(one, opts));
    }
    for (auto& w : works) w->wait();
  } catch (const std::exception& e) {
    return Failed("all-reduce", e);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CollectiveWork>> Collectives::StartAllReduceSum(at::Tensor tensor) {
  if (GlooNeedsFloat(options_.backend, tensor)) {
    std::vector<at::Tensor> wide = {tensor.to(at::kFloat)};
    if (absl::Status s = AllReduceSum(wide); !s.ok()) return s;
    tensor.copy_(wide[0]);
    return std::unique_ptr<CollectiveWork>(std::make_unique<DoneWork>());
  }
  try {
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    std::vector<at::Tensor> one = {std::move(tensor)};
    return std::unique_ptr<CollectiveWork>(
        std::make_unique<C10dWork>(state_->backend->allreduce(one, opts)));
  } catch (const std::exception& e) {
    return Failed("starting an all-reduce", e);
  }
}

absl::StatusOr<std::unique_ptr<CollectiveWork>> Collectives::StartReduceScatterSum(at::Tensor flat) {
  const int64_t world = options_.world_size;
  if (flat.numel() % world != 0 || !flat.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collectives: reduce-scatter of ", flat.numel(), " elements over ", world,
        " ranks; need a contiguous multiple of the world size"));
  }
  if (options_.backend != CollectiveBackend::kNccl) return StartAllReduceSum(std::move(flat));
  try {
    const int64_t n = flat.numel() / world;
    // In place, as NCCL allows: the output is the input's own slice.
    at::Tensor slice = flat.narrow(0, options_.rank * n, n);
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    return std::unique_ptr<CollectiveWork>(
        std::make_unique<C10dWork>(state_->backend->_reduce_scatter_base(slice, flat, opts)));
  } catch (const std::exception& e) {
    return Failed("starting a reduce-scatter", e);
  }
}

absl::Status Collectives::AllGatherInto(at::Tensor flat, at::Tensor shard) {
  const int world = options_.world_size;
  if (flat.numel() != shard.numel() * world || !flat.is_contiguous() || !shard.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collectives: all-gather of ", shard.numel(), " elements per rank into ", flat.numel(),
        "; need world_size (", world, ") times as many, both contiguous"));
  }
  try {
    if (options_.backend == CollectiveBackend::kNccl) {
      // NCCL gathers in place when the input is the output's own slice.
      state_->backend->_allgather_base(flat, shard)->wait();
      return absl::OkStatus();
    }
    // Gloo: the list form (its flat form is not in every LibTorch); it copies
    // the result into the slices, so the input must not alias them. No bf16:
    // an fp32 round trip (exact).
    const bool wide = GlooNeedsFloat(options_.backend, flat);
    at::Tensor out = wide ? at::empty({flat.numel()}, flat.options().dtype(at::kFloat)) : flat;
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < world; ++r) outputs[0].push_back(out.narrow(0, r * shard.numel(), shard.numel()));
    std::vector<at::Tensor> inputs = {wide ? shard.to(at::kFloat) : shard.clone()};
    state_->backend->allgather(outputs, inputs)->wait();
    if (wide) flat.copy_(out);
  } catch (const std::exception& e) {
    return Failed("all-gather", e);
  }
  return absl::OkStatus();
}

absl::Status Collectives::Broadcast(std::vector<at::Tensor>& tensors, int root) {
  try {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    std::vector<std::pair<at::Tensor, at::Tensor>> widened;  // (tensor, fp32 copy) for Gloo
    for (at::Tensor& t : tensors) {
      std::vector<at::Tensor> one = {t};
      if (GlooNeedsFloat(options_.backend, t)) {
        widened.emplace_back(t, t.to(at::kFloat));
        one = {widened.back().second};
      }
      works.push_back(state_->backend->broadcast(one, opts));
    }
    for (auto& w : works) w->wait();
    for (auto& [t, wide] : widened) t.copy_(wide);
  } catch (const std::exception& e) {
    return Failed("broadcast", e);
  }
  return absl::OkStatus();
}

absl::Status Collectives::Barrier() {
  try {
    if (options_.backend == CollectiveBackend::kNccl) {
      std::vector<at::Tensor> one = {at::zeros(
          {1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, options_.device_index))};
      state_->backend->allreduce(one)->wait();
      one[0].item<float>();  // the host waits for the device
      return absl::OkStatus();
    }
    state_->backend->barrier()->wait();
  } catch (const std::exception& e) {
    return Failed("barrier", e);
  }
  return absl::OkStatus();
}

}  // namespace foak
