// The set of metric families one process exports, rendered as one scrape.
//
// Why a registry and not a list in ServerMetrics: a scrape must never carry
// two HELP/TYPE blocks for one name, nor two families whose samples collide
// (a histogram "x" writes x_bucket, x_sum, x_count, so a counter named
// "x_count" would corrupt it). The registry refuses such a family when it is
// added, once, instead of at every scrape. Families are written sorted by
// name, so scrapes are stable and diffable.
//
// Families are owned by the registry and live as long as it does; the
// returned pointers stay valid (families are never removed). Thread-safe.
#ifndef FOAK_SERVER_METRICS_METRIC_REGISTRY_H_
#define FOAK_SERVER_METRICS_METRIC_REGISTRY_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/metrics/metric_family.h"

namespace foak {

class MetricRegistry {
 public:
  MetricRegistry() = default;
  MetricRegistry(const MetricRegistry&) = delete;
  MetricRegistry& operator=(const MetricRegistry&) = delete;

  // INVALID_ARGUMENT from MetricFamily::Create; ALREADY_EXISTS naming both
  // when a sample name of the new family is taken.
  absl::StatusOr<MetricFamily*> Add(MetricFamilyOptions options);
  absl::StatusOr<MetricFamily*> AddCounter(std::string name, std::string help,
                                           std::vector<std::string> label_names = {});
  absl::StatusOr<MetricFamily*> AddGauge(std::string name, std::string help,
                                         std::vector<std::string> label_names = {});
  absl::StatusOr<MetricFamily*> AddHistogram(std::string name, std::string help,
                                             std::vector<std::string> label_names,
                                             std::vector<double> bucket_bounds);

  // Every family in name order, in the text format 0.0.4.
  std::string Render() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<MetricFamily>> families_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> sample_owner_ ABSL_GUARDED_BY(mu_);  // sample name -> family
};

}  // namespace foak

#endif  // FOAK_SERVER_METRICS_METRIC_REGISTRY_H_
