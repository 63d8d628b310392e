#include "server/metrics/metric_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace foak {

absl::StatusOr<MetricFamily*> MetricRegistry::Add(MetricFamilyOptions options) {
  ASSIGN_OR_RETURN(std::unique_ptr<MetricFamily> family, MetricFamily::Create(std::move(options)));
  absl::MutexLock lock(&mu_);
  if (families_.count(family->name()) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("metric ", family->name(), " is already registered; a name has one family"));
  }
  const std::vector<std::string> samples = family->SampleNames();
  for (const std::string& sample : samples) {
    auto it = sample_owner_.find(sample);
    if (it != sample_owner_.end()) {
      return absl::AlreadyExistsError(absl::StrCat("metric ", family->name(), " writes samples named ",
                                                   sample, ", which metric ", it->second,
                                                   " already writes; pick another name"));
    }
  }
  // A plain family named like another family's derived sample (x_count) and
  // the reverse are both caught above, since both sets hold every sample name.
  for (const std::string& sample : samples) sample_owner_[sample] = family->name();
  MetricFamily* raw = family.get();
  families_[family->name()] = std::move(family);
  return raw;
}

absl::StatusOr<MetricFamily*> MetricRegistry::AddCounter(std::string name, std::string help,
                                                         std::vector<std::string> label_names) {
  MetricFamilyOptions options;
  options.name = std::move(name);
  options.help = std::move(help);
  options.type = MetricType::kCounter;
  options.label_names = std::move(label_names);
  return Add(std::move(options));
}

absl::StatusOr<MetricFamily*> MetricRegistry::AddGauge(std::string name, std::string help,
                                                       std::vector<std::string> label_names) {
  MetricFamilyOptions options;
  options.name = std::move(name);
  options.help = std::move(help);
  options.type = MetricType::kGauge;
  options.label_names = std::move(label_names);
  return Add(std::move(options));
}

absl::StatusOr<MetricFamily*> MetricRegistry::AddHistogram(std::string name, std::string help,
                                                           std::vector<std::string> label_names,
                                                           std::vector<double> bucket_bounds) {
  MetricFamilyOptions options;
  options.name = std::move(name);
  options.help = std::move(help);
  options.type = MetricType::kHistogram;
  options.label_names = std::move(label_names);
  options.bucket_bounds = std::move(bucket_bounds);
  return Add(std::move(options));
}

std::string MetricRegistry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, family] : families_) family->AppendText(&out);
  return out;
}

}  // namespace foak
