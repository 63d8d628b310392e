// The element types every FOAK kernel handles, named without torch or CUDA
// types so kernel headers, CPU references and CUDA launchers can share them.
#ifndef FOAK_KERNELS_COMMON_SCALAR_KIND_H_
#define FOAK_KERNELS_COMMON_SCALAR_KIND_H_

namespace foak {

enum class ScalarKind { kF32, kBF16, kF16 };

}  // namespace foak

#endif  // FOAK_KERNELS_COMMON_SCALAR_KIND_H_
