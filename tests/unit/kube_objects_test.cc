// The Kubernetes launcher's pure parts: object names and labels, option and
// gang checks, the Job and Service JSON (field by field, and against the
// official Kubernetes OpenAPI schemas through deploy/k8s/validate.sh), and
// how pod states decide a gang's outcome.
#include "server/launch/kube_objects.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/launch/kube_gang_status.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using nlohmann::json;

KubernetesLauncherOptions Options() {
  KubernetesLauncherOptions o;
  o.namespace_name = "foak";
  o.image = "registry.example.com/foak-worker:1.0";
  o.shared_volume_claim = "foak-shared";
  return o;
}

LaunchRequest CpuRequest() {
  LaunchRequest r;
  r.job_id = "job-0123456789abcdef";
  r.attempt = 0;
  r.gang.nodes = 1;
  r.gang.ranks_per_node = 2;
  r.gang.worker_args = {"train", "--job", "/shared/foakd/jobs/job-0123456789abcdef/job-0.json"};
  r.gang.env = {{"FOAK_JOB_ID", r.job_id}, {"FOAK_COORDINATOR", "foakd:7070"}};
  return r;
}

LaunchRequest GpuGangRequest() {
  LaunchRequest r = CpuRequest();
  r.job_id = "job-00000000000000aa";
  r.attempt = 3;
  r.gang.nodes = 2;
  r.gang.ranks_per_node = 8;
  r.gang.gpus_per_node = 8;
  r.gang.node_selector = {{"nvidia.com/gpu.product", "NVIDIA-H200"}, {"pool", "train"}};
  Toleration gpu;
  gpu.key = "nvidia.com/gpu";
  gpu.op = "Exists";
  gpu.effect = "NoSchedule";
  Toleration spot;
  spot.key = "spot";
  spot.value = "true";
  spot.effect = "NoExecute";
  spot.toleration_seconds = 300;
  r.gang.tolerations = {gpu, spot};
  r.gang.queue = "team-a";
  return r;
}

TEST(KubeObjectsTest, NamesAreShortDnsLabelsAndDistinct) {
  EXPECT_EQ(KubeObjectName("job-0123456789abcdef", 0), "foak-job-0123456789abcdef-0");
  EXPECT_EQ(KubeObjectName("job-0123456789abcdef", 12), "foak-job-0123456789abcdef-12");
  // Changed ids get a hash, so ids that clean up alike stay apart.
  const std::string upper = KubeObjectName("My_Job", 1);
  const std::string lower = KubeObjectName("my-job", 1);
  EXPECT_EQ(lower, "foak-my-job-1");
  EXPECT_TRUE(absl::StartsWith(upper, "foak-my-job-")) << upper;
  EXPECT_NE(upper, lower);
  const std::string long_a = KubeObjectName(std::string(200, 'a') + "x", 7);
  const std::string long_b = KubeObjectName(std::string(200, 'a') + "y", 7);
  EXPECT_NE(long_a, long_b);
  for (const std::string& name :
       {upper, lower, long_a, long_b, KubeObjectName("---", 0), KubeObjectName("Ω.é/x", 99),
        KubeObjectName(std::string(80, '-'), 9223372036854775807)}) {
    EXPECT_TRUE(IsDns1123Label(name)) << name;
    EXPECT_LE(name.size(), kKubeMaxObjectNameBytes) << name;
    EXPECT_LE(absl::StrCat(name, "-99999").size(), 63u) << "pod hostname of " << name;
  }
  EXPECT_EQ(KubeObjectName("Job.A", 0), KubeObjectName("Job.A", 0));  // stable
}

TEST(KubeObjectsTest, JobIdLabelsAreValidLabelValues) {
  EXPECT_EQ(KubeJobIdLabel("job-0123456789abcdef"), "job-0123456789abcdef");
  EXPECT_EQ(KubeJobIdLabel("Job_A.1"), "Job_A.1");
  for (const std::string& id : {std::string("-x-"), std::string(100, 'z'), std::string("a b/c")}) {
    EXPECT_TRUE(IsKubeLabelValue(KubeJobIdLabel(id))) << KubeJobIdLabel(id);
    EXPECT_FALSE(KubeJobIdLabel(id).empty());
  }
  EXPECT_NE(KubeJobIdLabel("a b"), KubeJobIdLabel("a/b"));
  EXPECT_EQ(KubeLabelSelector(KubeSelectorLabels("foakd", "job-1", 2)),
            "app.kubernetes.io/instance=foakd,foak.dev/attempt=2,foak.dev/job-id=job-1");
  EXPECT_EQ(KubeNodeRanks(1, 8), "node 1 (ranks 8-15)");
  EXPECT_EQ(KubeNodeRanks(0, 1), "node 0 (rank 0)");
}

TEST(KubeObjectsTest, QuantitiesAndOptions) {
  for (const char* q : {"16Gi", "500m", "1", "1.5", "2e3", "64Mi", "0.5Gi", "+1k"}) {
    EXPECT_TRUE(IsKubeQuantity(q)) << q;
  }
  for (const char* q : {"", "Gi", "16GB", "1.2.3", "e3", "16 Gi", "1e"}) {
    EXPECT_FALSE(IsKubeQuantity(q)) << q;
  }
  EXPECT_TRUE(ValidateKubernetesLauncherOptions(Options()).ok());
  struct Case {
    std::function<void(KubernetesLauncherOptions*)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto* o) { o->image = ""; }, "image"},
      {[](auto* o) { o->shared_volume_claim = ""; }, "shared_volume_claim"},
      {[](auto* o) { o->namespace_name = "Foak"; }, "namespace_name"},
      {[](auto* o) { o->image_pull_policy = "Sometimes"; }, "image_pull_policy"},
      {[](auto* o) { o->shared_mount_path = "shared"; }, "shared_mount_path"},
      {[](auto* o) { o->shared_mount_path = "/dev/shm"; }, "shared_mount_path"},
      {[](auto* o) { o->shm_size = "16GB"; }, "shm_size"},
      {[](auto* o) { o->memory_request = "lots"; }, "memory_request"},
      {[](auto* o) { o->master_port = 0; }, "master_port"},
      {[](auto* o) { o->instance = "-x"; }, "instance"},
      {[](auto* o) { o->ttl_seconds_after_finished = 5; }, "ttl_seconds_after_finished"},
      {[](auto* o) { o->poll_interval_ms = 0; }, "poll_interval_ms"},
      {[](auto* o) { o->worker_path = "foak-worker"; }, "worker_path"},
  };
  for (const Case& c : cases) {
    KubernetesLauncherOptions o = Options();
    c.change(&o);
    absl::Status s = ValidateKubernetesLauncherOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_TRUE(absl::StartsWith(s.message(), c.field)) << s;
  }
}

TEST(KubeObjectsTest, GangChecks) {
  EXPECT_TRUE(ValidateGangSpec(GpuGangRequest().gang).ok());
  auto check = [](std::function<void(GangSpec*)> change, const std::string& field) {
    GangSpec g = GpuGangRequest().gang;
    change(&g);
    absl::Status s = ValidateGangSpec(g);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_TRUE(absl::StrContains(s.message(), field)) << s;
  };
  check([](GangSpec* g) { g->nodes = 0; }, "gang.nodes");
  check([](GangSpec* g) { g->ranks_per_node = 0; }, "gang.ranks_per_node");
  check([](GangSpec* g) { g->worker_args.clear(); }, "gang.worker_args");
  check([](GangSpec* g) { g->tolerations[0].op = "In"; }, "gang.tolerations[0].op");
  check([](GangSpec* g) { g->tolerations[0].value = "x"; }, "gang.tolerations[0].value");
  check([](GangSpec* g) { g->tolerations[1].effect = "NoSchedule"; },
        "gang.tolerations[1].toleration_seconds");
  check([](GangSpec* g) { g->node_selector["bad key!"] = "x"; }, "gang.node_selector");
  check([](GangSpec* g) { g->queue = "team a"; }, "gang.queue");
  check([](GangSpec* g) { g->env.push_back({"A=B", "c"}); }, "gang.env");
}

TEST(KubeObjectsTest, GpuGangJob) {
  const KubernetesLauncherOptions o = Options();
  json job = KubeJobObject(o, GpuGangRequest());
  const std::string name = "foak-job-00000000000000aa-3";
  EXPECT_EQ(job["metadata"]["name"], name);
  EXPECT_EQ(job["metadata"]["namespace"], "foak");
  EXPECT_EQ(job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"], "team-a");
  EXPECT_EQ(job["metadata"]["annotations"]["foak.dev/job-id"], "job-00000000000000aa");
  json& spec = job["spec"];
  EXPECT_EQ(spec["completionMode"], "Indexed");
  EXPECT_EQ(spec["completions"], 2);
  EXPECT_EQ(spec["parallelism"], 2);
  EXPECT_EQ(spec["backoffLimit"], 0);
  EXPECT_EQ(spec["suspend"], true);
  EXPECT_EQ(spec["ttlSecondsAfterFinished"], 3600);
  json& pod = spec["template"]["spec"];
  EXPECT_EQ(spec["template"]["metadata"]["labels"]["foak.dev/attempt"], "3");
  EXPECT_FALSE(spec["template"]["metadata"]["labels"].contains("kueue.x-k8s.io/queue-name"));
  EXPECT_EQ(pod["subdomain"], name);
  EXPECT_EQ(pod["restartPolicy"], "Never");
  EXPECT_EQ(pod["automountServiceAccountToken"], false);
  EXPECT_EQ(pod["terminationGracePeriodSeconds"], 10);
  EXPECT_EQ(pod["securityContext"]["runAsUser"], 10001);
  EXPECT_EQ(pod["nodeSelector"],
            json({{"nvidia.com/gpu.product", "NVIDIA-H200"}, {"pool", "train"}}));
  EXPECT_EQ(pod["tolerations"],
            json::parse(R"([{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"},
                            {"key":"spot","operator":"Equal","value":"true","effect":"NoExecute",
                             "tolerationSeconds":300}])"));
  json& c = pod["containers"][0];
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"], "8");
  EXPECT_EQ(c["resources"]["requests"]["nvidia.com/gpu"], "8");
  EXPECT_EQ(c["command"],
            json({"/usr/local/bin/foak-worker", "launch", "--nproc-per-node", "8", "--nnodes", "2",
                  "--master-addr", name + "-0." + name, "--master-port", "29500", "--", "train",
                  "--job", "/shared/foakd/jobs/job-0123456789abcdef/job-0.json"}));
}

TEST(KubeObjectsTest, CpuJobHasNoGpusNoQueueAndOptionalResources) {
  KubernetesLauncherOptions o = Options();
  o.cpu_request = "4";
  o.memory_request = "16Gi";
  o.service_account = "foak-worker";
  o.ttl_seconds_after_finished = -1;
  json job = KubeJobObject(o, CpuRequest());
  EXPECT_FALSE(job["spec"].contains("suspend"));
  EXPECT_FALSE(job["spec"].contains("ttlSecondsAfterFinished"));
  EXPECT_FALSE(job["metadata"]["labels"].contains("kueue.x-k8s.io/queue-name"));
  json& pod = job["spec"]["template"]["spec"];
  EXPECT_EQ(pod["serviceAccountName"], "foak-worker");
  EXPECT_FALSE(pod.contains("nodeSelector"));
  EXPECT_FALSE(pod.contains("tolerations"));
  json& c = pod["containers"][0];
  EXPECT_EQ(c["resources"], json::parse(R"({"requests":{"cpu":"4","memory":"16Gi"},
                                            "limits":{"memory":"16Gi"}})"));
  EXPECT_EQ(c["env"], json::parse(R"([{"name":"NCCL_DEBUG","value":"WARN"},
      {"name":"FOAK_JOB_ID","value":"job-0123456789abcdef"},
      {"name":"FOAK_COORDINATOR","value":"foakd:7070"}])"));
}

TEST(KubeObjectsTest, ServiceIsHeadlessAndOwnedByTheJob) {
  json svc = KubeServiceObject(Options(), GpuGangRequest(), "uid-123");
  EXPECT_EQ(svc["spec"]["clusterIP"], "None");
  EXPECT_EQ(svc["spec"]["publishNotReadyAddresses"], true);
  EXPECT_EQ(svc["spec"]["selector"], json({{"app.kubernetes.io/instance", "foakd"},
                                           {"foak.dev/attempt", "3"},
                                           {"foak.dev/job-id", "job-00000000000000aa"}}));
  EXPECT_EQ(
      svc["metadata"]["ownerReferences"],
      json::parse(R"([{"apiVersion":"batch/v1","kind":"Job","name":"foak-job-00000000000000aa-3",
                             "uid":"uid-123","blockOwnerDeletion":false}])"));
}

// --- deploy/k8s/validate.sh: the official OpenAPI schemas, strictly ---

class KubeSchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = FOAK_SOURCE_DIR;
    if (testing::RunCapture("command -v node").exit_code != 0) GTEST_SKIP() << "no node";
    if (!PathExists(JoinPath(root_, "deploy/tools/node_modules/kubernetes-models"))) {
      GTEST_SKIP() << "deploy/tools/node_modules missing (scripts/install_deps.sh)";
    }
  }
  testing::WorkerResult Validate(const std::vector<std::pair<std::string, json>>& objects) {
    std::string args;
    for (const auto& [file, object] : objects) {
      const std::string path = JoinPath(dir_.path(), file);
      EXPECT_TRUE(WriteFileAtomically(path, object.dump(2)).ok());
      absl::StrAppend(&args, " '", path, "'");
    }
    return testing::RunCapture(JoinPath(root_, "deploy/k8s/validate.sh") + args);
  }
  std::string root_;
  testing::TempDir dir_{"kube_schema"};
};

TEST_F(KubeSchemaTest, ObjectsMatchTheKubernetesSchemas) {
  KubernetesLauncherOptions with_resources = Options();
  with_resources.cpu_request = "8";
  with_resources.cpu_limit = "16";
  with_resources.memory_request = "64Gi";
  with_resources.service_account = "foak-worker";
  const testing::WorkerResult r = Validate({
      {"cpu-job.json", KubeJobObject(Options(), CpuRequest())},
      {"cpu-service.json", KubeServiceObject(Options(), CpuRequest(), "uid-1")},
      {"gpu-job.json", KubeJobObject(with_resources, GpuGangRequest())},
      {"gpu-service.json", KubeServiceObject(with_resources, GpuGangRequest(), "uid-2")},
  });
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

TEST_F(KubeSchemaTest, AMisspelledFieldFails) {
  json job = KubeJobObject(Options(), GpuGangRequest());
  job["spec"]["completionsMode"] = job["spec"]["completionMode"];
  job["spec"].erase("completionMode");
  json service = KubeServiceObject(Options(), CpuRequest(), "uid-1");
  service["spec"]["clusterIP"] = 7;  // a type error
  const testing::WorkerResult r = Validate({{"job.json", job}, {"service.json", service}});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out + r.err, "completionsMode")) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out + r.err, "clusterIP")) << r.out << r.err;
}

// --- pod states -> the deciding failure and the outcome ---

json Pod(const std::string& name, int64_t node, const json& status, bool deleting = false) {
  json pod = {
      {"metadata",
       {{"name", name},
        {"annotations", {{"batch.kubernetes.io/job-completion-index", std::to_string(node)}}},
        {"ownerReferences", json::array({{{"uid", "uid-job"}}})}}},
      {"status", status}};
  if (deleting) pod["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:09Z";
  return pod;
}

json Terminated(int code, const std::string& reason, const std::string& finished) {
  return {
      {"phase", code == 0 ? "Succeeded" : "Failed"},
      {"containerStatuses",
       json::array({{{"name", "worker"},
                     {"state",
                      {{"terminated",
                        {{"exitCode", code}, {"reason", reason}, {"finishedAt", finished}}}}}}})}};
}

TEST(KubeGangStatusTest, TheCauseNotTheConsequenceDecides) {
  // Node 0 was stopped by the Job controller (deleting, SIGTERM) after node
  // 1 failed with exit 1 at the same second; a pod of another Job is ignored.
  json other = Pod("old-0", 0, Terminated(137, "OOMKilled", "2025-01-01T00:00:01Z"));
  other["metadata"]["ownerReferences"][0]["uid"] = "uid-old";
  const json pods = {
      {"items",
       json::array({Pod("p-0", 0, Terminated(143, "Error", "2025-01-01T00:00:05Z"), true),
                    Pod("p-1", 1, Terminated(1, "Error", "2025-01-01T00:00:05Z")), other})}};
  const KubeGangView gang = ReadKubeGang(json::object(), pods, "uid-job");
  ASSERT_EQ(gang.pods.size(), 2u);
  ASSERT_TRUE(KubeDecidingFailure(gang).has_value());
  EXPECT_EQ(gang.pods[*KubeDecidingFailure(gang)].name, "p-1");
  // Among pods not being deleted, the one killed outright wins.
  const json pods2 = {
      {"items",
       json::array({Pod("p-0", 0, Terminated(1, "Error", "2025-01-01T00:00:04Z")),
                    Pod("p-1", 1, Terminated(137, "OOMKilled", "2025-01-01T00:00:05Z"))})}};
  const KubeGangView gang2 = ReadKubeGang(json::object(), pods2, "uid-job");
  EXPECT_EQ(gang2.pods[*KubeDecidingFailure(gang2)].name, "p-1");
  const LaunchOutcome oom =
      KubeFailureOutcome(KubeGangShape{"j", 0, "ns", "foak-j-0", 2, 4}, gang2.pods[1], "", "");
  EXPECT_EQ(oom.reason, kReasonKilled);
  EXPECT_TRUE(oom.retryable);
  EXPECT_TRUE(absl::StrContains(oom.message, "node 1 (ranks 4-7) was killed: out of memory"))
      << oom.message;
  const std::vector<RankExit> exits = KubeRankExits(gang2, 4);
  ASSERT_EQ(exits.size(), 8u);
  EXPECT_EQ(exits[0].exit_code, 1);
  EXPECT_EQ(exits[7].rank, 7);
  EXPECT_EQ(exits[7].signal, 9);
}

TEST(KubeGangStatusTest, DisruptionsAndContainersThatCannotRun) {
  // Node 0 was preempted (being deleted, but marked DisruptionTarget): it is
  // the cause, not node 1 that lost its peer.
  json preempted = Pod("p-0", 0, Terminated(143, "Error", "2025-01-01T00:00:05Z"), true);
  preempted["status"]["conditions"] =
      json::array({{{"type", "DisruptionTarget"},
                    {"status", "True"},
                    {"reason", "PreemptionByScheduler"},
                    {"message", "Preempted in order to admit critical pod"}}});
  const json pods = {
      {"items",
       json::array({preempted, Pod("p-1", 1, Terminated(1, "Error", "2025-01-01T00:00:05Z"))})}};
  const KubeGangView gang = ReadKubeGang(json::object(), pods, "uid-job");
  ASSERT_EQ(gang.pods[*KubeDecidingFailure(gang)].name, "p-0");
  const KubeGangShape shape{"j", 1, "ns", "foak-j-1", 2, 1};
  LaunchOutcome o = KubeFailureOutcome(shape, gang.pods[0], "", "");
  EXPECT_EQ(o.reason, kReasonKilled);
  EXPECT_TRUE(o.retryable);
  EXPECT_TRUE(absl::StrContains(o.message,
                                "node 0 (rank 0) was stopped by Kubernetes "
                                "(PreemptionByScheduler: Preempted in order to admit "
                                "critical pod; exit code 143)"))
      << o.message;
  // A worker_path that is not in the image: the container never ran.
  json start = Terminated(128, "StartError", "2025-01-01T00:00:05Z");
  start["containerStatuses"][0]["state"]["terminated"]["message"] =
      "exec: \"/usr/local/bin/foak-worker\": stat: no such file or directory";
  const KubeGangView gang2 =
      ReadKubeGang(json::object(), {{"items", json::array({Pod("p-0", 0, start)})}}, "uid-job");
  o = KubeFailureOutcome(shape, gang2.pods[0], "", "log: 404");
  EXPECT_EQ(o.reason, kReasonLaunchFailed);
  EXPECT_FALSE(o.retryable);
  EXPECT_TRUE(absl::StrContains(o.message, "could not start its worker (StartError: exec:"))
      << o.message;
  // A pod the kubelet failed before the worker ended (evicted).
  const KubeGangView gang3 = ReadKubeGang(
      json::object(),
      {{"items", json::array({Pod("p-0", 0,
                                  {{"phase", "Failed"},
                                   {"reason", "Evicted"},
                                   {"message", "The node was low on resource: memory."}})})}},
      "uid-job");
  ASSERT_TRUE(KubeDecidingFailure(gang3).has_value());
  o = KubeFailureOutcome(shape, gang3.pods[0], "", "");
  EXPECT_EQ(o.reason, kReasonKilled);
  EXPECT_TRUE(
      absl::StrContains(o.message, "Failed: Evicted: The node was low on resource: memory."))
      << o.message;
}

TEST(KubeGangStatusTest, LogTailIsBounded) {
  std::string log;
  for (int i = 0; i < 100; ++i) absl::StrAppend(&log, "line ", i, " ", std::string(150, 'x'), "\n");
  const std::string tail = KubeLogTail(log);
  EXPECT_LE(tail.size(), 2100u);
  EXPECT_TRUE(absl::EndsWith(tail, std::string(150, 'x'))) << tail;
  EXPECT_TRUE(absl::StrContains(tail, "line 99 ")) << tail;
  EXPECT_EQ(KubeLogTail("a\r\nb\n\n"), "a\nb");
  EXPECT_EQ(KubeLogTail(std::string(5000, 'y')).size(), 512u);
}

// Kueue preempts by suspending the Job; its pods, stopped by the Job
// controller, end with SIGTERM while being deleted. That decides nothing:
// the Job waits to be admitted again.
TEST(KubeGangStatusTest, PodsOfASuspendedJobStoppedByPreemptionAreNoFailure) {
  const json job = {{"spec", {{"suspend", true}}}};
  const json pods = {
      {"items",
       json::array({Pod("p-0", 0, Terminated(143, "Error", "2025-01-01T00:00:05Z"), true),
                    Pod("p-1", 1, Terminated(143, "Error", "2025-01-01T00:00:05Z"), true)})}};
  const KubeGangView gang = ReadKubeGang(job, pods, "uid-job");
  ASSERT_TRUE(gang.suspended);
  EXPECT_FALSE(KubeDecidingFailure(gang).has_value());
  // Running, the same pods would be a failure.
  const KubeGangView running = ReadKubeGang(json::object(), pods, "uid-job");
  EXPECT_TRUE(KubeDecidingFailure(running).has_value());
}

}  // namespace
}  // namespace foak
