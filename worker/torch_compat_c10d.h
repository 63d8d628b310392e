// The c10d part of the LibTorch 1.13 / 2.x compatibility layer (see
// torch_compat.h, item 3), kept apart because the c10d headers are heavy and
// only worker/parallel/ includes them.
//
// What differs:
//  - 1.13: ProcessGroupGloo derives from c10d::ProcessGroup. 2.x: backends
//    (ProcessGroupGloo, ProcessGroupNCCL) derive from c10d::Backend, and a
//    c10d::ProcessGroup dispatches to them. Both expose the same
//    allreduce / broadcast / barrier with the same option structs, so foak
//    holds the backend itself through `C10dBackend`.
//  - NCCL: only 2.x on the GPU host has it; its header declares nothing
//    unless USE_C10D_NCCL is defined (the build defines it there), and its
//    backend must be shut down before exit.
//  - Gloo needs the gloo headers: Debian's libgloo-dev for 1.13; the build
//    defines FOAK_HAVE_GLOO only where they were found.
#ifndef FOAK_WORKER_TORCH_COMPAT_C10D_H_
#define FOAK_WORKER_TORCH_COMPAT_C10D_H_

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>

#include <chrono>
#include <string>

#if FOAK_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace foak::compat {

#if TORCH_VERSION_MAJOR >= 2
using C10dBackend = c10d::Backend;
#else
using C10dBackend = c10d::ProcessGroup;
#endif

#if FOAK_HAVE_GLOO
inline c10::intrusive_ptr<C10dBackend> MakeGlooBackend(const c10::intrusive_ptr<c10d::Store>& store,
                                                      int rank, int size,
                                                      std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}
#endif

#if defined(USE_C10D_NCCL)
inline c10::intrusive_ptr<C10dBackend> MakeNcclBackend(const c10::intrusive_ptr<c10d::Store>& store,
                                                      int rank, int size,
                                                      std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
}
#endif

// Releases a backend's communicators; NCCL logs a leak warning without it.
inline void ShutdownBackend(C10dBackend& backend) {
#if defined(USE_C10D_NCCL)
  if (auto* nccl = dynamic_cast<c10d::ProcessGroupNCCL*>(&backend)) nccl->shutdown();
#else
  (void)backend;
#endif
}

}  // namespace foak::compat

#endif  // FOAK_WORKER_TORCH_COMPAT_C10D_H_
