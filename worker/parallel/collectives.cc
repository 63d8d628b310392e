#include "worker/parallel/collectives.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
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
    store_options.numWorkers = options.world_size;
    store_options.timeout = options.timeout;
    state->store = c10::make_intrusive<c10d::TCPStore>(host, store_options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("collectives: TCP store at ", host, ":", port,
                                               " (rank ", options.rank, "): ", e.what()));
  }
  return Join(options, std::move(state));
}

absl::StatusOr<std::unique_ptr<Collectives>> Collectives::CreateInProcess(
    const CollectivesOptions& options, const std::shared_ptr<InProcessStore>& store) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  auto state = std::make_unique<State>();
  state->store = store->store;
  return Join(options, std::move(state));
}

absl::Status Collectives::AllReduceSum(std::vector<at::Tensor>& tensors) {
  try {
    // One collective per tensor (c10d's multi-tensor form means one tensor
    // per local device, all of one shape); all are issued before any wait.
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (at::Tensor& t : tensors) {
      std::vector<at::Tensor> one = {t};
      works.push_back(state_->backend->allreduce(one, opts));
    }
    for (auto& w : works) w->wait();
  } catch (const std::exception& e) {
    return Failed("all-reduce", e);
  }
  return absl::OkStatus();
}

absl::Status Collectives::Broadcast(std::vector<at::Tensor>& tensors, int root) {
  try {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (at::Tensor& t : tensors) {
      std::vector<at::Tensor> one = {t};
      works.push_back(state_->backend->broadcast(one, opts));
    }
    for (auto& w : works) w->wait();
  } catch (const std::exception& e) {
    return Failed("broadcast", e);
  }
  return absl::OkStatus();
}

absl::Status Collectives::Barrier() {
  try {
    state_->backend->barrier()->wait();
  } catch (const std::exception& e) {
    return Failed("barrier", e);
  }
  return absl::OkStatus();
}

}  // namespace foak
