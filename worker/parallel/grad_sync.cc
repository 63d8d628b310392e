#include "worker/parallel/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/autograd/variable.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace foak {

struct GradSync::State {
  struct Bucket {
    at::Tensor flat;        // the gradients
    at::Tensor param_flat;  // shard_params: the parameters
    std::vector<size_t> params;  // indices into State::params
    int64_t pending = 0;         // parameters not yet ready in this step
    bool started = false;
    std::unique_ptr<CollectiveWork> work;
  };
  struct Param {
    std::string name;
    at::Tensor tensor;
    at::Tensor view;  // its gradient: a view into its bucket
    size_t bucket = 0;
    bool ready = false;
    std::shared_ptr<torch::autograd::Node> accumulator;  // kept alive: it holds the hook
    uintptr_t hook_key = 0;
  };

  Collectives* comm = nullptr;
  bool shard = false;
  std::vector<GradShard> shards;  // shard_params: this rank's slice of each bucket
  std::vector<Param> params;
  std::vector<Bucket> buckets;
  std::mutex mu;
  bool last_micro_batch = true;
  size_t next_to_start = 0;
  int64_t started_in_backward = 0;
  std::vector<std::string> twice;  // parameters accumulated after their bucket was sent
  absl::Status start_error;

  // Starts every ready bucket from next_to_start on, in order. Holds mu.
  void StartReadyBuckets(bool from_hook) {
    while (next_to_start < buckets.size() && buckets[next_to_start].pending == 0) {
      Bucket& b = buckets[next_to_start];
      // Sharded: a rank needs only its slice's sums.
      absl::StatusOr<std::unique_ptr<CollectiveWork>> work =
          shard ? comm->StartReduceScatterSum(b.flat) : comm->StartAllReduceSum(b.flat);
      if (!work.ok()) {
        if (start_error.ok()) start_error = work.status();
        b.pending = -1;  // never retried
      } else {
        b.work = *std::move(work);
      }
      b.started = true;
      if (from_hook) ++started_in_backward;
      ++next_to_start;
    }
  }

  // Called from the gradient accumulator's post hook of parameter i.
  void OnReady(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!last_micro_batch) return;
    Param& p = params[i];
    // Autograd accumulates into the view in place; should the gradient have
    // been replaced (it was released), fold it back into the bucket.
    at::Tensor& grad = p.tensor.mutable_grad();
    if (!grad.defined() || !grad.is_same(p.view)) {
      if (grad.defined()) {
        at::NoGradGuard no_grad;
        p.view.copy_(grad);
      }
      grad = p.view;
    }
    Bucket& b = buckets[p.bucket];
    if (p.ready || b.started) {
      twice.push_back(p.name);
      return;
    }
    p.ready = true;
    if (--b.pending == 0) StartReadyBuckets(/*from_hook=*/true);
  }
};

namespace {

class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::weak_ptr<GradSync::State> state, size_t index)
      : state_(std::move(state)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/)
      override {
    if (std::shared_ptr<GradSync::State> s = state_.lock()) s->OnReady(index_);
    return outputs;
  }

 private:
  std::weak_ptr<GradSync::State> state_;
  size_t index_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GradSync>> GradSync::Create(Collectives* comm,
                                                           std::vector<std::string> names,
                                                           std::vector<at::Tensor> params,
                                                           const GradSyncOptions& options,
                                                           std::vector<int> groups) {
  if (names.size() != params.size() || params.empty() ||
      (!groups.empty() && groups.size() != params.size())) {
    return absl::InvalidArgumentError(absl::StrCat("GradSync: ", params.size(), " parameters, ",
                                                   names.size(), " names and ", groups.size(),
                                                   " groups; need as many, >= 1 (groups may be empty)"));
  }
  if (groups.empty()) groups.assign(params.size(), 0);
  auto state = std::make_shared<State>();
  state->comm = comm;
  state->shard = options.shard_params;
  const int64_t world = comm->world_size();
  const int64_t rank = comm->rank();
  // The dtype each parameter has once in its bucket.
  auto bucket_dtype = [&](const at::Tensor& t) {
    return options.shard_params && options.param_dtype.has_value() ? *options.param_dtype
                                                                   : t.scalar_type();
  };
  const at::Device device = params[0].device();
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].device() != device || !params[i].requires_grad() || !params[i].is_leaf()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GradSync: parameter ", names[i], " is on ", params[i].device().str(), " (first: ",
          device.str(), "), requires_grad ", params[i].requires_grad(),
          "; every parameter must be a trainable leaf on one device"));
    }
    State::Param p;
    p.name = std::move(names[i]);
    p.tensor = params[i];
    state->params.push_back(std::move(p));
  }
  // Buckets: reverse order, one (dtype, group) each, closed at the size cap.
  using Key = std::pair<at::ScalarType, int>;
  std::map<Key, std::vector<size_t>> open;  // key -> params of its open bucket
  std::map<Key, int64_t> open_bytes;
  std::vector<std::vector<size_t>> layout;
  for (size_t k = params.size(); k-- > 0;) {
    const at::Tensor& t = params[k];
    const Key key(bucket_dtype(t), groups[k]);
    open[key].push_back(k);
    open_bytes[key] += t.numel() * static_cast<int64_t>(c10::elementSize(key.first));
    const int64_t cap = layout.empty() ? options.first_bucket_bytes : options.bucket_bytes;
    if (open_bytes[key] >= cap) {
      layout.push_back(std::move(open[key]));
      open[key].clear();
      open_bytes[key] = 0;
    }
  }
  for (auto& [key, members] : open) {
    if (!members.empty()) layout.push_back(std::move(members));
  }
  at::NoGradGuard no_grad;
  for (std::vector<size_t>& members : layout) {
    State::Bucket b;
    int64_t numel = 0;
    for (size_t k : members) numel += params[k].numel();
    // Sharded: padded so that every rank's slice has the same length.
    const int64_t padded = options.shard_params ? (numel + world - 1) / world * world : numel;
    const at::TensorOptions like = params[members[0]].options().dtype(bucket_dtype(params[members[0]]));
    b.flat = at::zeros({padded}, like);
    at::Tensor original;  // the parameters' values in their own dtype, flat
    if (options.shard_params) {
      b.param_flat = at::zeros({padded}, like);
      original = at::zeros({padded}, params[members[0]].options());
    }
    int64_t offset = 0;
    for (size_t k : members) {
      State::Param& p = state->params[k];
      p.bucket = state->buckets.size();
      p.view = b.flat.narrow(0, offset, p.tensor.numel()).view(p.tensor.sizes());
      if (options.shard_params) {
        original.narrow(0, offset, p.tensor.numel()).copy_(p.tensor.detach().reshape({-1}));
        at::Tensor view = b.param_flat.narrow(0, offset, p.tensor.numel()).view(p.tensor.sizes());
        view.copy_(p.tensor.detach());
        p.tensor.set_data(view);  // the same parameter, now living in the bucket
      }
      offset += p.tensor.numel();
    }
    if (options.shard_params) {
      const int64_t slice = padded / world;
      GradShard s;
      s.group = groups[members[0]];
      s.params = b.param_flat.narrow(0, rank * slice, slice).detach();
      s.grads = b.flat.narrow(0, rank * slice, slice).detach();
      s.initial = original.narrow(0, rank * slice, slice).clone();
      state->shards.push_back(std::move(s));
    }
    b.params = std::move(members);
    state->buckets.push_back(std::move(b));
  }
  for (size_t i = 0; i < state->params.size(); ++i) {
    State::Param& p = state->params[i];
    p.accumulator = torch::autograd::impl::grad_accumulator(p.tensor);
    if (p.accumulator == nullptr) {
      return absl::InternalError(absl::StrCat("GradSync: no gradient accumulator for ", p.name));
    }
    p.hook_key = p.accumulator->add_post_hook(
        std::make_unique<ReadyHook>(std::weak_ptr<State>(state), i));
  }
  std::unique_ptr<GradSync> sync(new GradSync(std::move(state)));
  sync->ResetGrads();
  sync->BeginMicroBatch(true);
  return sync;
}

GradSync::GradSync(std::shared_ptr<State> state) : state_(std::move(state)) {}

GradSync::~GradSync() {
  for (State::Param& p : state_->params) {
    if (p.accumulator != nullptr) p.accumulator->del_post_hook(p.hook_key);
  }
}

void GradSync::BeginMicroBatch(bool last) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->last_micro_batch = last;
  if (!last) return;
  for (State::Param& p : state_->params) p.ready = false;
  for (State::Bucket& b : state_->buckets) {
    b.pending = static_cast<int64_t>(b.params.size());
    b.started = false;
    b.work.reset();
  }
  state_->next_to_start = 0;
  state_->started_in_backward = 0;
  state_->twice.clear();
  state_->start_error = absl::OkStatus();
}

absl::Status GradSync::Finish() {
  std::vector<State::Bucket*> to_wait;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    // Parameters that got no gradient count as ready with zeros.
    for (State::Param& p : state_->params) {
      if (!p.tensor.grad().defined() || !p.tensor.grad().is_same(p.view)) {
        if (p.tensor.grad().defined()) {
          at::NoGradGuard no_grad;
          p.view.copy_(p.tensor.grad());
        }
        p.tensor.mutable_grad() = p.view;
      }
      if (!p.ready && !state_->buckets[p.bucket].started) {
        p.ready = true;
        --state_->buckets[p.bucket].pending;
      }
    }
    state_->StartReadyBuckets(/*from_hook=*/false);
    for (State::Bucket& b : state_->buckets) to_wait.push_back(&b);
    state_->last_micro_batch = false;  // no more hooks until the next step
  }
  absl::Status status = state_->start_error;
  for (State::Bucket* b : to_wait) {
    if (b->work == nullptr) continue;
    absl::Status s = b->work->Wait();
    if (status.ok() && !s.ok()) status = s;
    b->work.reset();
  }
  if (!status.ok()) return status;
  if (!state_->twice.empty()) {
    return absl::InternalError(absl::StrCat(
        "data parallel: the gradient of ", absl::StrJoin(state_->twice, ", "),
        " was accumulated again after its bucket had been sent in the same backward; a "
        "parameter must reach its gradient accumulator once per backward"));
  }
  return absl::OkStatus();
}

void GradSync::ResetGrads() {
  at::NoGradGuard no_grad;
  for (State::Bucket& b : state_->buckets) b.flat.zero_();
  for (State::Param& p : state_->params) p.tensor.mutable_grad() = p.view;
}

const std::vector<GradShard>& GradSync::shards() const { return state_->shards; }

void GradSync::DropInitialShards() {
  for (GradShard& s : state_->shards) s.initial = at::Tensor();
}

absl::Status GradSync::AllGatherParams() {
  if (!state_->shard) return absl::FailedPreconditionError("GradSync: made without shard_params");
  at::NoGradGuard no_grad;
  for (size_t k = 0; k < state_->buckets.size(); ++k) {
    absl::Status s = state_->comm->AllGatherInto(state_->buckets[k].param_flat, state_->shards[k].params);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, at::Tensor>> GradSync::GatherToHost(
    const std::vector<at::Tensor>& slices) {
  if (!state_->shard || slices.size() != state_->buckets.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradSync: gathering ", slices.size(), " slices from ", state_->buckets.size(),
        " buckets", state_->shard ? "" : " made without shard_params"));
  }
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> out;
  const int64_t world = state_->comm->world_size();
  for (size_t k = 0; k < slices.size(); ++k) {
    const at::Tensor slice = slices[k].contiguous();
    at::Tensor full = at::empty({slice.numel() * world}, slice.options());
    absl::Status s = state_->comm->AllGatherInto(full, full.narrow(0, state_->comm->rank() * slice.numel(), slice.numel()).copy_(slice));
    if (!s.ok()) return s;
    at::Tensor host = full.cpu();
    int64_t offset = 0;
    for (size_t i : state_->buckets[k].params) {
      const State::Param& p = state_->params[i];
      out[p.name] = host.narrow(0, offset, p.tensor.numel()).view(p.tensor.sizes());
      offset += p.tensor.numel();
    }
  }
  return out;
}

std::string GradSync::Layout() const {
  std::string out;
  for (const State::Bucket& b : state_->buckets) {
    absl::StrAppend(&out, b.flat.numel(), ":");
    for (size_t i : b.params) absl::StrAppend(&out, state_->params[i].name, ",");
    out.back() = ';';
  }
  return out;
}

int64_t GradSync::num_buckets() const { return static_cast<int64_t>(state_->buckets.size()); }

int64_t GradSync::buckets_started_in_backward() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->started_in_backward;
}

absl::Status BroadcastTensors(Collectives& comm, std::vector<at::Tensor> tensors, int root) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> data;
  data.reserve(tensors.size());
  for (const at::Tensor& t : tensors) data.push_back(t.detach());
  return comm.Broadcast(data, root);
}

}  // namespace foak
