// One Prometheus metric family: a name, a help text, a type, fixed label
// names, and one child per distinct tuple of label values.
//
// Why one class for three types: counters, gauges and histograms differ only
// in which mutations are legal and in how a child is written out, and foakd
// needs about a dozen families, so a type tag checked at each call is less
// code (and less to review) than three class hierarchies. A mutation that the
// type does not allow, or label values of the wrong arity, return an error
// instead of crashing the coordinator; callers with fixed shapes (like
// ServerMetrics) are covered by tests.
//
// Children are kept in a std::map ordered by label values, so the rendered
// text is deterministic (golden tests, diffs between scrapes). A family with
// no label names has exactly one child, present from the start, so it always
// exports a sample (a counter reads 0 before its first increment), as the
// Prometheus client libraries do. A family with label names and no children
// writes nothing at all, not even its HELP and TYPE lines.
//
// Histograms store per-bucket counts and write them cumulatively, with the
// implicit le="+Inf" bucket equal to _count. An observation lands in the
// first bucket whose upper bound is >= the value; NaN lands only in +Inf
// (and makes _sum NaN), matching the Go client.
//
// Thread-safe: every method may be called from any thread.
#ifndef FOAK_SERVER_METRICS_METRIC_FAMILY_H_
#define FOAK_SERVER_METRICS_METRIC_FAMILY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace foak {

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge", "histogram" (the words of the # TYPE line).
const char* MetricTypeName(MetricType type);

struct MetricFamilyOptions {
  std::string name;  // [a-zA-Z_:][a-zA-Z0-9_:]*; counters should end in _total
  std::string help;  // required, one line is best (newlines are escaped)
  MetricType type = MetricType::kGauge;
  // Fixed for the family's life; [a-zA-Z_][a-zA-Z0-9_]*, no "__" prefix, no
  // duplicates, and "le" is reserved for histograms.
  std::vector<std::string> label_names;
  // Histograms only: finite upper bounds, strictly increasing. The +Inf bucket
  // is always added; a trailing +Inf given here is accepted and dropped.
  std::vector<double> bucket_bounds;
};

class MetricFamily {
 public:
  // INVALID_ARGUMENT naming the family and the offending name, bound or help.
  static absl::StatusOr<std::unique_ptr<MetricFamily>> Create(MetricFamilyOptions options);

  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  // Gauges only: the child's value becomes `value` (NaN and +-Inf allowed).
  absl::Status Set(const std::vector<std::string>& label_values, double value);
  // Counters (delta >= 0; a negative or NaN delta is INVALID_ARGUMENT) and
  // gauges (any delta).
  absl::Status Inc(const std::vector<std::string>& label_values, double delta = 1);
  // Histograms only: counts `value` in its bucket, adds it to _sum.
  absl::Status Observe(const std::vector<std::string>& label_values, double value);

  // Drops the child with these label values; false when there was none. For a
  // family without labels (pass {}), resets its one child to zero instead.
  bool Remove(const std::vector<std::string>& label_values);
  // Drops every child whose first label values are `leading_values` (all the
  // series of one job, whatever its other labels); returns how many. More
  // values than the family has labels match nothing; for a family without
  // labels, {} resets its one child.
  size_t RemoveWithPrefix(const std::vector<std::string>& leading_values);
  // Drops every child (a family without labels resets its one child).
  void Clear();
  size_t num_children() const;

  // The sample names this family writes: {name} or, for a histogram,
  // {name_bucket, name_count, name_sum}. Used to refuse clashing families.
  std::vector<std::string> SampleNames() const;

  // Appends the HELP and TYPE lines and one line per sample (nothing when the
  // family has label names and no children).
  void AppendText(std::string* out) const;

  const std::string& name() const { return options_.name; }
  MetricType type() const { return options_.type; }
  const std::vector<std::string>& label_names() const { return options_.label_names; }

 private:
  struct Child {
    double value = 0;                     // counters and gauges
    std::vector<uint64_t> bucket_counts;  // histograms: per bucket, +Inf last
    double sum = 0;
    uint64_t count = 0;
  };

  explicit MetricFamily(MetricFamilyOptions options);

  absl::Status CheckType(MetricType want, const char* operation) const;
  absl::Status CheckLabels(const std::vector<std::string>& label_values) const;
  Child NewChild() const;
  Child& ChildFor(const std::vector<std::string>& label_values) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `{a="x",b="y"` without the closing brace (empty when there are no
  // labels), so a histogram can append its le pair.
  std::string OpenLabels(const std::vector<std::string>& label_values) const;

  const MetricFamilyOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, Child> children_ ABSL_GUARDED_BY(mu_);
};

}  // namespace foak

#endif  // FOAK_SERVER_METRICS_METRIC_FAMILY_H_
