// RETURN_IF_ERROR / ASSIGN_OR_RETURN, defined once for the whole project.
#ifndef FOAK_COMMON_STATUS_MACROS_H_
#define FOAK_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FOAK_STATUS_CONCAT_INNER_(a, b) a##b
#define FOAK_STATUS_CONCAT_(a, b) FOAK_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                       \
  do {                                              \
    ::absl::Status foak_status_ = (expr);           \
    if (!foak_status_.ok()) return foak_status_;    \
  } while (0)

// ASSIGN_OR_RETURN(auto x, MakeX()); declares or assigns `lhs` from a StatusOr,
// returning its status from the enclosing function on error.
#define ASSIGN_OR_RETURN(lhs, expr)                                              \
  FOAK_ASSIGN_OR_RETURN_IMPL_(FOAK_STATUS_CONCAT_(foak_statusor_, __LINE__), lhs, \
                              expr)
#define FOAK_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return statusor.status();          \
  lhs = std::move(statusor).value()

#endif  // FOAK_COMMON_STATUS_MACROS_H_
