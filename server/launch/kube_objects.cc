#include "server/launch/kube_objects.h"

#include <cstdio>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace foak {
namespace {

using nlohmann::json;

constexpr size_t kMaxLabelValueBytes = 63;
constexpr int64_t kMaxNodes = 100000;  // keeps <job name>-<index> within 63

// 8 hex digits of FNV-1a 64 of `s`: stable across builds and machines (names
// must match between foakd restarts), unlike std::hash.
std::string ShortHash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>((h >> 32) ^ (h & 0xffffffffu)));
  return buf;
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// `text` cut to `max` bytes, with "-<hash of full>" when it was cut or
// `changed`; never ending in '-' or '.' before the hash.
std::string CutWithHash(std::string text, const std::string& full, bool changed, size_t max) {
  if (!changed && text.size() <= max) return text;
  const std::string hash = ShortHash(full);
  if (text.size() > max - hash.size() - 1) text.resize(max - hash.size() - 1);
  while (!text.empty() && (text.back() == '-' || text.back() == '.' || text.back() == '_')) {
    text.pop_back();
  }
  return text.empty() ? hash : absl::StrCat(text, "-", hash);
}

int64_t CeilSeconds(int64_t ms) { return (ms + 999) / 1000; }

absl::Status Invalid(const std::string& field, const std::string& value, const std::string& want) {
  return absl::InvalidArgumentError(absl::StrCat(field, " = '", value, "'; ", want));
}

json Labels(const std::map<std::string, std::string>& labels) {
  json out = json::object();
  for (const auto& [k, v] : labels) out[k] = v;
  return out;
}

}  // namespace

std::string KubeObjectName(const std::string& job_id, int64_t attempt) {
  std::string clean;
  for (char c : job_id) {
    const char lower = absl::ascii_tolower(static_cast<unsigned char>(c));
    clean.push_back(IsLowerAlnum(lower) || lower == '-' ? lower : '-');
  }
  const std::string suffix = absl::StrCat("-", attempt);
  const std::string prefix = "foak-";
  const size_t room = kKubeMaxObjectNameBytes - prefix.size() - suffix.size();
  return absl::StrCat(prefix, CutWithHash(clean, job_id, clean != job_id, room), suffix);
}

std::string KubeJobIdLabel(const std::string& job_id) {
  if (IsKubeLabelValue(job_id)) return job_id;
  std::string clean;
  for (char c : job_id) {
    const bool ok =
        absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    clean.push_back(ok ? c : '-');
  }
  while (!clean.empty() && !absl::ascii_isalnum(static_cast<unsigned char>(clean.front()))) {
    clean.erase(clean.begin());
  }
  return CutWithHash(clean, job_id, /*changed=*/true, kMaxLabelValueBytes);
}

std::map<std::string, std::string> KubeSelectorLabels(const std::string& instance,
                                                      const std::string& job_id, int64_t attempt) {
  return {{kKubeLabelInstance, instance},
          {kKubeLabelJobId, KubeJobIdLabel(job_id)},
          {kKubeLabelAttempt, absl::StrCat(attempt)}};
}

std::map<std::string, std::string> KubeObjectLabels(const std::string& instance,
                                                    const std::string& job_id, int64_t attempt) {
  std::map<std::string, std::string> labels = KubeSelectorLabels(instance, job_id, attempt);
  labels[kKubeLabelName] = "foak-worker";
  labels[kKubeLabelPartOf] = "foak";
  labels[kKubeLabelManagedBy] = kKubeManagedBy;
  return labels;
}

std::string KubeLabelSelector(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) absl::StrAppend(&out, out.empty() ? "" : ",", k, "=", v);
  return out;
}

std::string KubeNodeRanks(int64_t node, int64_t ranks_per_node) {
  const int64_t first = node * ranks_per_node;
  if (ranks_per_node <= 1) return absl::StrCat("node ", node, " (rank ", first, ")");
  return absl::StrCat("node ", node, " (ranks ", first, "-", first + ranks_per_node - 1, ")");
}

bool IsDns1123Label(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!IsLowerAlnum(c) && c != '-') return false;
  }
  return IsLowerAlnum(s.front()) && IsLowerAlnum(s.back());
}

bool IsDns1123Subdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    const std::string part =
        s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!IsDns1123Label(part)) return false;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

bool IsKubeLabelValue(const std::string& s) {
  if (s.empty()) return true;
  if (s.size() > kMaxLabelValueBytes) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return absl::ascii_isalnum(static_cast<unsigned char>(s.front())) &&
         absl::ascii_isalnum(static_cast<unsigned char>(s.back()));
}

bool IsKubeLabelKey(const std::string& s) {
  const size_t slash = s.find('/');
  std::string name = s;
  if (slash != std::string::npos) {
    if (!IsDns1123Subdomain(s.substr(0, slash))) return false;
    name = s.substr(slash + 1);
  }
  return !name.empty() && IsKubeLabelValue(name);
}

bool IsKubeQuantity(const std::string& s) {
  // <sign><digits>[.<digits>][suffix]; suffix: Ki Mi Gi Ti Pi Ei, n u m k M G T P E, e<int>.
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t digits = 0;
  while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) return false;
  const std::string suffix = s.substr(i);
  static const std::set<std::string> kSuffixes = {"",  "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n",
                                                  "u", "m",  "k",  "M",  "G",  "T",  "P",  "E"};
  if (kSuffixes.count(suffix) > 0) return true;
  if (suffix.size() < 2 || (suffix[0] != 'e' && suffix[0] != 'E')) return false;
  size_t j = 1;
  if (suffix[j] == '+' || suffix[j] == '-') ++j;
  if (j >= suffix.size()) return false;
  for (; j < suffix.size(); ++j) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(suffix[j]))) return false;
  }
  return true;
}

absl::Status ValidateKubernetesLauncherOptions(const KubernetesLauncherOptions& o) {
  if (!IsDns1123Label(o.namespace_name)) {
    return Invalid("namespace_name", o.namespace_name, "expected a Kubernetes namespace name");
  }
  if (o.image.empty() || o.image.find_first_of(" \t\n") != std::string::npos) {
    return Invalid(
        "image", o.image,
        "expected the worker image reference, e.g. registry.example.com/foak-worker:1.0");
  }
  if (o.image_pull_policy != "Always" && o.image_pull_policy != "IfNotPresent" &&
      o.image_pull_policy != "Never") {
    return Invalid("image_pull_policy", o.image_pull_policy,
                   "expected Always, IfNotPresent or Never");
  }
  if (!absl::StartsWith(o.worker_path, "/")) {
    return Invalid("worker_path", o.worker_path, "expected an absolute path inside the image");
  }
  if (!o.service_account.empty() && !IsDns1123Subdomain(o.service_account)) {
    return Invalid("service_account", o.service_account, "expected a ServiceAccount name");
  }
  if (!IsDns1123Subdomain(o.shared_volume_claim)) {
    return Invalid("shared_volume_claim", o.shared_volume_claim,
                   "expected the name of the PersistentVolumeClaim every worker pod mounts (it "
                   "holds the job files, models, datasets and checkpoints)");
  }
  if (!absl::StartsWith(o.shared_mount_path, "/") || o.shared_mount_path == "/" ||
      absl::StartsWith(o.shared_mount_path + "/", "/dev/shm/")) {
    return Invalid("shared_mount_path", o.shared_mount_path,
                   "expected an absolute folder other than / and /dev/shm, e.g. /shared");
  }
  if (!IsKubeQuantity(o.shm_size)) {
    return Invalid("shm_size", o.shm_size, "expected a Kubernetes quantity, e.g. 16Gi");
  }
  if (o.master_port < 1 || o.master_port > 65535) {
    return Invalid("master_port", absl::StrCat(o.master_port), "expected a port in [1, 65535]");
  }
  const std::pair<const char*, const std::string*> quantities[] = {
      {"cpu_request", &o.cpu_request},
      {"cpu_limit", &o.cpu_limit},
      {"memory_request", &o.memory_request},
      {"memory_limit", &o.memory_limit}};
  for (const auto& [name, value] : quantities) {
    if (!value->empty() && !IsKubeQuantity(*value)) {
      return Invalid(name, *value, "expected a Kubernetes quantity, e.g. 8, 500m or 64Gi");
    }
  }
  if (o.instance.empty() || !IsKubeLabelValue(o.instance)) {
    return Invalid("instance", o.instance,
                   "expected a label value: 1-63 of [A-Za-z0-9._-], starting and ending with a "
                   "letter or digit");
  }
  if (o.grace_period_ms < 0) {
    return Invalid("grace_period_ms", absl::StrCat(o.grace_period_ms), "expected >= 0");
  }
  if (o.ttl_seconds_after_finished != -1 && o.ttl_seconds_after_finished < 60) {
    return Invalid("ttl_seconds_after_finished", absl::StrCat(o.ttl_seconds_after_finished),
                   "expected >= 60 (a shorter one may delete a Job before foakd sees it finish) "
                   "or -1 (never)");
  }
  if (o.poll_interval_ms < 1) {
    return Invalid("poll_interval_ms", absl::StrCat(o.poll_interval_ms), "expected >= 1");
  }
  const std::pair<const char*, int64_t> waits[] = {
      {"pod_start_timeout_ms", o.pod_start_timeout_ms},
      {"api_failure_timeout_ms", o.api_failure_timeout_ms},
      {"deletion_wait_ms", o.deletion_wait_ms}};
  for (const auto& [name, value] : waits) {
    if (value < 0) return Invalid(name, absl::StrCat(value), "expected >= 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateGangSpec(const GangSpec& gang) {
  if (gang.nodes < 1 || gang.nodes > kMaxNodes) {
    return Invalid("gang.nodes", absl::StrCat(gang.nodes), "expected 1 to 100000");
  }
  if (gang.ranks_per_node < 1) {
    return Invalid("gang.ranks_per_node", absl::StrCat(gang.ranks_per_node), "expected >= 1");
  }
  if (gang.gpus_per_node < 0) {
    return Invalid("gang.gpus_per_node", absl::StrCat(gang.gpus_per_node), "expected >= 0");
  }
  if (gang.worker_args.empty()) {
    return absl::InvalidArgumentError(
        "gang.worker_args is empty; expected the worker command, e.g. train --job FILE");
  }
  for (const auto& [name, value] : gang.env) {
    if (name.empty() || name.find('=') != std::string::npos) {
      return Invalid("gang.env name", name, "expected a non-empty name without '='");
    }
  }
  for (const auto& [key, value] : gang.node_selector) {
    if (!IsKubeLabelKey(key)) return Invalid("gang.node_selector key", key, "expected a label key");
    if (!IsKubeLabelValue(value)) {
      return Invalid(absl::StrCat("gang.node_selector[", key, "]"), value,
                     "expected a label value");
    }
  }
  for (size_t i = 0; i < gang.tolerations.size(); ++i) {
    const Toleration& t = gang.tolerations[i];
    const std::string field = absl::StrCat("gang.tolerations[", i, "]");
    if (t.op != "Equal" && t.op != "Exists") {
      return Invalid(field + ".op", t.op, "expected Equal or Exists");
    }
    if (t.op == "Exists" && !t.value.empty()) {
      return Invalid(field + ".value", t.value, "must be empty with op Exists");
    }
    if (t.key.empty() && t.op != "Exists") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": an empty key (every taint) needs op Exists"));
    }
    if (!t.key.empty() && !IsKubeLabelKey(t.key))
      return Invalid(field + ".key", t.key, "expected a taint key");
    if (!t.effect.empty() && t.effect != "NoSchedule" && t.effect != "PreferNoSchedule" &&
        t.effect != "NoExecute") {
      return Invalid(field + ".effect", t.effect,
                     "expected empty, NoSchedule, PreferNoSchedule or NoExecute");
    }
    if (t.toleration_seconds.has_value() && t.effect != "NoExecute") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".toleration_seconds is only allowed with effect NoExecute"));
    }
  }
  if (!gang.queue.empty() && (!IsKubeLabelValue(gang.queue))) {
    return Invalid("gang.queue", gang.queue, "expected a Kueue LocalQueue name");
  }
  return absl::OkStatus();
}

nlohmann::json KubeJobObject(const KubernetesLauncherOptions& o, const LaunchRequest& request) {
  const GangSpec& gang = request.gang;
  const std::string name = KubeObjectName(request.job_id, request.attempt);
  const std::map<std::string, std::string> labels =
      KubeObjectLabels(o.instance, request.job_id, request.attempt);
  const json annotations = {{kKubeAnnotationJobId, request.job_id}};

  json command = {o.worker_path,
                  "launch",
                  "--nproc-per-node",
                  absl::StrCat(gang.ranks_per_node),
                  "--nnodes",
                  absl::StrCat(gang.nodes),
                  "--master-addr",
                  absl::StrCat(name, "-0.", name),
                  "--master-port",
                  absl::StrCat(o.master_port),
                  "--"};
  for (const std::string& arg : gang.worker_args) command.push_back(arg);

  // NCCL_DEBUG=WARN puts NCCL's own explanation of a failed collective into
  // the pod's log, whose tail becomes the failure message. The gang's env
  // (FOAK_*) comes after and may override it.
  std::vector<std::pair<std::string, std::string>> env_pairs = {{"NCCL_DEBUG", "WARN"}};
  for (const auto& kv : gang.env) {
    bool replaced = false;
    for (auto& existing : env_pairs) {
      if (existing.first == kv.first) {
        existing.second = kv.second;
        replaced = true;
      }
    }
    if (!replaced) env_pairs.push_back(kv);
  }
  json env = json::array();
  for (const auto& [k, v] : env_pairs) env.push_back({{"name", k}, {"value", v}});

  json requests = json::object();
  json limits = json::object();
  if (gang.gpus_per_node > 0) {
    requests["nvidia.com/gpu"] = absl::StrCat(gang.gpus_per_node);
    limits["nvidia.com/gpu"] = absl::StrCat(gang.gpus_per_node);
  }
  if (!o.cpu_request.empty()) requests["cpu"] = o.cpu_request;
  if (!o.cpu_limit.empty()) limits["cpu"] = o.cpu_limit;
  if (!o.memory_request.empty()) requests["memory"] = o.memory_request;
  const std::string memory_limit = o.memory_limit.empty() ? o.memory_request : o.memory_limit;
  if (!memory_limit.empty()) limits["memory"] = memory_limit;
  json resources = json::object();
  if (!requests.empty()) resources["requests"] = requests;
  if (!limits.empty()) resources["limits"] = limits;

  json container = {
      {"name", kKubeContainerName},
      {"image", o.image},
      {"imagePullPolicy", o.image_pull_policy},
      {"command", command},
      {"env", env},
      {"resources", resources},
      {"ports",
       json::array(
           {{{"name", "rendezvous"}, {"containerPort", o.master_port}, {"protocol", "TCP"}}})},
      {"volumeMounts", json::array({{{"name", "dshm"}, {"mountPath", "/dev/shm"}},
                                    {{"name", "shared"}, {"mountPath", o.shared_mount_path}}})},
      // The log's tail lands in the terminated state's message when the
      // worker exits with an error: a fallback for a failed log request.
      {"terminationMessagePolicy", "FallbackToLogsOnError"},
      {"securityContext",
       {{"allowPrivilegeEscalation", false}, {"capabilities", {{"drop", json::array({"ALL"})}}}}},
  };

  json tolerations = json::array();
  for (const Toleration& t : gang.tolerations) {
    json tol = {{"operator", t.op}};
    if (!t.key.empty()) tol["key"] = t.key;
    if (!t.value.empty()) tol["value"] = t.value;
    if (!t.effect.empty()) tol["effect"] = t.effect;
    if (t.toleration_seconds.has_value()) tol["tolerationSeconds"] = *t.toleration_seconds;
    tolerations.push_back(tol);
  }

  json pod_spec = {
      {"restartPolicy", "Never"},
      {"subdomain", name},
      {"automountServiceAccountToken", false},
      {"terminationGracePeriodSeconds", CeilSeconds(o.grace_period_ms)},
      // uid/gid 10001 is the "foak" user of deploy/docker/worker.Dockerfile;
      // fsGroup makes the shared volume writable for it, OnRootMismatch
      // avoids a recursive chown of a large volume on every pod start.
      {"securityContext",
       {{"runAsNonRoot", true},
        {"runAsUser", 10001},
        {"runAsGroup", 10001},
        {"fsGroup", 10001},
        {"fsGroupChangePolicy", "OnRootMismatch"},
        {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
      {"containers", json::array({container})},
      {"volumes",
       json::array(
           {{{"name", "dshm"}, {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", o.shm_size}}}},
            {{"name", "shared"},
             {"persistentVolumeClaim", {{"claimName", o.shared_volume_claim}}}}})},
  };
  if (!o.service_account.empty()) pod_spec["serviceAccountName"] = o.service_account;
  if (!gang.node_selector.empty()) pod_spec["nodeSelector"] = Labels(gang.node_selector);
  if (!tolerations.empty()) pod_spec["tolerations"] = tolerations;

  json job_labels = Labels(labels);
  if (!gang.queue.empty()) job_labels[kKubeLabelQueue] = gang.queue;
  json spec = {
      {"completionMode", "Indexed"},
      {"completions", gang.nodes},
      {"parallelism", gang.nodes},
      {"backoffLimit", 0},
      {"template",
       {{"metadata", {{"labels", Labels(labels)}, {"annotations", annotations}}},
        {"spec", pod_spec}}},
  };
  if (o.ttl_seconds_after_finished >= 0)
    spec["ttlSecondsAfterFinished"] = o.ttl_seconds_after_finished;
  if (!gang.queue.empty()) spec["suspend"] = true;
  return {
      {"apiVersion", "batch/v1"},
      {"kind", "Job"},
      {"metadata",
       {{"name", name},
        {"namespace", o.namespace_name},
        {"labels", job_labels},
        {"annotations", annotations}}},
      {"spec", spec},
  };
}

nlohmann::json KubeServiceObject(const KubernetesLauncherOptions& o, const LaunchRequest& request,
                                 const std::string& job_uid) {
  const std::string name = KubeObjectName(request.job_id, request.attempt);
  return {
      {"apiVersion", "v1"},
      {"kind", "Service"},
      {"metadata",
       {{"name", name},
        {"namespace", o.namespace_name},
        {"labels", Labels(KubeObjectLabels(o.instance, request.job_id, request.attempt))},
        {"annotations", {{kKubeAnnotationJobId, request.job_id}}},
        {"ownerReferences", json::array({{{"apiVersion", "batch/v1"},
                                          {"kind", "Job"},
                                          {"name", name},
                                          {"uid", job_uid},
                                          {"blockOwnerDeletion", false}}})}}},
      {"spec",
       {{"clusterIP", "None"},
        {"publishNotReadyAddresses", true},
        {"selector", Labels(KubeSelectorLabels(o.instance, request.job_id, request.attempt))},
        {"ports", json::array({{{"name", "rendezvous"},
                                {"port", o.master_port},
                                {"targetPort", o.master_port},
                                {"protocol", "TCP"}}})}}},
  };
}

std::string KubeDeleteOptions(const std::string& propagation_policy, const std::string& uid) {
  json options = {
      {"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"propagationPolicy", propagation_policy}};
  if (!uid.empty()) options["preconditions"] = {{"uid", uid}};
  return options.dump();
}

}  // namespace foak
