#include "server/metrics/metric_family.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/metrics/exposition_text.h"

namespace foak {

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

absl::StatusOr<std::unique_ptr<MetricFamily>> MetricFamily::Create(MetricFamilyOptions options) {
  if (!IsValidMetricName(options.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metric name '", options.name, "' is not valid; use [a-zA-Z_:][a-zA-Z0-9_:]*"));
  }
  if (options.help.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric ", options.name, " has no help text; say what it measures and its unit"));
  }
  std::set<std::string> seen;
  for (const std::string& label : options.label_names) {
    if (!IsValidLabelName(label)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", options.name, ": label name '", label,
                       "' is not valid; use [a-zA-Z_][a-zA-Z0-9_]* without a leading __"));
    }
    if (!seen.insert(label).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", options.name, ": label name '", label, "' is repeated"));
    }
    if (options.type == MetricType::kHistogram && label == "le") {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric ", options.name, ": the label name 'le' is reserved for histogram buckets"));
    }
  }
  if (options.type != MetricType::kHistogram) {
    if (!options.bucket_bounds.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric ", options.name, " is a ", MetricTypeName(options.type),
          "; only histograms take bucket bounds"));
    }
  } else {
    std::vector<double>& bounds = options.bucket_bounds;
    if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
    for (size_t i = 0; i < bounds.size(); ++i) {
      if (!std::isfinite(bounds[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("histogram ", options.name, ": bucket bound ", FormatMetricValue(bounds[i]),
                         " is not finite; only a trailing +Inf is allowed"));
      }
      if (i > 0 && !(bounds[i] > bounds[i - 1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "histogram ", options.name, ": bucket bounds must increase strictly, but ",
            FormatMetricValue(bounds[i]), " follows ", FormatMetricValue(bounds[i - 1])));
      }
    }
  }
  return std::unique_ptr<MetricFamily>(new MetricFamily(std::move(options)));
}

MetricFamily::MetricFamily(MetricFamilyOptions options) : options_(std::move(options)) {
  if (options_.label_names.empty()) {
    absl::MutexLock lock(&mu_);
    children_.emplace(std::vector<std::string>{}, NewChild());
  }
}

absl::Status MetricFamily::CheckType(MetricType want, const char* operation) const {
  if (options_.type == want) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(operation, " on ", options_.name, ", a ",
                                                    MetricTypeName(options_.type), "; it needs a ",
                                                    MetricTypeName(want)));
}

absl::Status MetricFamily::CheckLabels(const std::vector<std::string>& label_values) const {
  if (label_values.size() == options_.label_names.size()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "metric ", options_.name, " takes ", options_.label_names.size(), " label values (",
      absl::StrJoin(options_.label_names, ", "), "), got ", label_values.size()));
}

MetricFamily::Child MetricFamily::NewChild() const {
  Child child;
  if (options_.type == MetricType::kHistogram) {
    child.bucket_counts.assign(options_.bucket_bounds.size() + 1, 0);
  }
  return child;
}

MetricFamily::Child& MetricFamily::ChildFor(const std::vector<std::string>& label_values) {
  auto it = children_.find(label_values);
  if (it == children_.end()) it = children_.emplace(label_values, NewChild()).first;
  return it->second;
}

absl::Status MetricFamily::Set(const std::vector<std::string>& label_values, double value) {
  RETURN_IF_ERROR(CheckType(MetricType::kGauge, "Set"));
  RETURN_IF_ERROR(CheckLabels(label_values));
  absl::MutexLock lock(&mu_);
  ChildFor(label_values).value = value;
  return absl::OkStatus();
}

absl::Status MetricFamily::Inc(const std::vector<std::string>& label_values, double delta) {
  if (options_.type == MetricType::kHistogram) return CheckType(MetricType::kCounter, "Inc");
  RETURN_IF_ERROR(CheckLabels(label_values));
  if (options_.type == MetricType::kCounter && !(delta >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("counter ", options_.name, " can only go up, but Inc got ",
                                                   FormatMetricValue(delta)));
  }
  absl::MutexLock lock(&mu_);
  ChildFor(label_values).value += delta;
  return absl::OkStatus();
}

absl::Status MetricFamily::Observe(const std::vector<std::string>& label_values, double value) {
  RETURN_IF_ERROR(CheckType(MetricType::kHistogram, "Observe"));
  RETURN_IF_ERROR(CheckLabels(label_values));
  const std::vector<double>& bounds = options_.bucket_bounds;
  // First bound >= value; NaN compares false everywhere and so lands in +Inf.
  size_t bucket = bounds.size();
  if (!std::isnan(value)) {
    bucket = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  }
  absl::MutexLock lock(&mu_);
  Child& child = ChildFor(label_values);
  ++child.bucket_counts[bucket];
  child.sum += value;
  ++child.count;
  return absl::OkStatus();
}

bool MetricFamily::Remove(const std::vector<std::string>& label_values) {
  absl::MutexLock lock(&mu_);
  auto it = children_.find(label_values);
  if (it == children_.end()) return false;
  if (options_.label_names.empty()) {
    it->second = NewChild();
  } else {
    children_.erase(it);
  }
  return true;
}

size_t MetricFamily::RemoveWithPrefix(const std::vector<std::string>& leading_values) {
  if (leading_values.size() > options_.label_names.size()) return 0;
  absl::MutexLock lock(&mu_);
  if (options_.label_names.empty()) {
    children_.begin()->second = NewChild();
    return 1;
  }
  // The map orders label tuples lexicographically, so the children that start
  // with `leading_values` are adjacent, from the prefix's own position on.
  size_t removed = 0;
  auto it = children_.lower_bound(leading_values);
  while (it != children_.end() &&
         std::equal(leading_values.begin(), leading_values.end(), it->first.begin())) {
    it = children_.erase(it);
    ++removed;
  }
  return removed;
}

void MetricFamily::Clear() {
  absl::MutexLock lock(&mu_);
  children_.clear();
  if (options_.label_names.empty()) children_.emplace(std::vector<std::string>{}, NewChild());
}

size_t MetricFamily::num_children() const {
  absl::MutexLock lock(&mu_);
  return children_.size();
}

std::vector<std::string> MetricFamily::SampleNames() const {
  if (options_.type != MetricType::kHistogram) return {options_.name};
  return {options_.name + "_bucket", options_.name + "_count", options_.name + "_sum"};
}

std::string MetricFamily::OpenLabels(const std::vector<std::string>& label_values) const {
  if (label_values.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < label_values.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, options_.label_names[i], "=\"", EscapeLabelValue(label_values[i]), "\"");
  }
  return out;
}

void MetricFamily::AppendText(std::string* out) const {
  absl::MutexLock lock(&mu_);
  if (children_.empty()) return;
  const std::string& name = options_.name;
  absl::StrAppend(out, "# HELP ", name, " ", EscapeHelp(options_.help), "\n");
  absl::StrAppend(out, "# TYPE ", name, " ", MetricTypeName(options_.type), "\n");
  for (const auto& [label_values, child] : children_) {
    const std::string open = OpenLabels(label_values);
    const std::string labels = open.empty() ? "" : open + "}";
    if (options_.type != MetricType::kHistogram) {
      absl::StrAppend(out, name, labels, " ", FormatMetricValue(child.value), "\n");
      continue;
    }
    const std::string le_prefix = open.empty() ? "{le=\"" : open + ",le=\"";
    uint64_t cumulative = 0;
    for (size_t b = 0; b < child.bucket_counts.size(); ++b) {
      cumulative += child.bucket_counts[b];
      const std::string le =
          b < options_.bucket_bounds.size() ? FormatMetricValue(options_.bucket_bounds[b]) : "+Inf";
      absl::StrAppend(out, name, "_bucket", le_prefix, le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(out, name, "_sum", labels, " ", FormatMetricValue(child.sum), "\n");
    absl::StrAppend(out, name, "_count", labels, " ", child.count, "\n");
  }
}

}  // namespace foak
