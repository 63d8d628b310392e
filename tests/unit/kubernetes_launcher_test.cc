// KubernetesLauncher against a fake API server: real HTTPS on 127.0.0.1
// with a certificate made here, a CA bundle and a token file like a pod's,
// and FakeKubeApi checking every request the launcher makes. A test scripts
// the cluster's side (pods appear, run, fail; the Job completes) and waits
// with deadlines for what the launcher reports; polls run every 20 ms.
#include "server/launch/kubernetes_launcher.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/worker_run.h"
#include "tests/unit/fake_kube_api.h"
#include "tests/unit/tls_test_server.h"

namespace foak {
namespace {

using nlohmann::json;

constexpr absl::Duration kTimeout = absl::Seconds(10);
constexpr char kNs[] = "foak-test";

// Polls `done` until it holds or the timeout passes.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kTimeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

// Collects callbacks; tests wait on it.
class Recorder {
 public:
  Launcher::Callbacks Callbacks() {
    Launcher::Callbacks callbacks;
    callbacks.on_log = [this](const LogLine& line) {
      absl::MutexLock lock(&mu_);
      lines_.push_back(line);
    };
    callbacks.on_exit = [this](const LaunchOutcome& outcome) {
      absl::MutexLock lock(&mu_);
      outcomes_.push_back(outcome);
    };
    return callbacks;
  }
  std::optional<LaunchOutcome> WaitOutcome(const std::string& job_id) {
    std::optional<LaunchOutcome> found;
    Eventually([&] {
      found = Outcome(job_id);
      return found.has_value();
    });
    return found;
  }
  std::optional<LaunchOutcome> Outcome(const std::string& job_id) {
    absl::MutexLock lock(&mu_);
    for (const LaunchOutcome& o : outcomes_) {
      if (o.job_id == job_id) return o;
    }
    return std::nullopt;
  }
  int Outcomes() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(outcomes_.size());
  }
  // Lines containing `text`.
  std::vector<LogLine> Lines(const std::string& text) {
    absl::MutexLock lock(&mu_);
    std::vector<LogLine> out;
    for (const LogLine& l : lines_) {
      if (absl::StrContains(l.text, text)) out.push_back(l);
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  std::vector<LogLine> lines_ ABSL_GUARDED_BY(mu_);
  std::vector<LaunchOutcome> outcomes_ ABSL_GUARDED_BY(mu_);
};

json Running() {
  return {{"phase", "Running"},
          {"conditions", json::array({{{"type", "PodScheduled"}, {"status", "True"}}})},
          {"containerStatuses",
           json::array({{{"name", "worker"},
                         {"state", {{"running", {{"startedAt", "2025-01-01T00:00:00Z"}}}}}}})}};
}

json Terminated(int code, const std::string& reason) {
  return {{"phase", code == 0 ? "Succeeded" : "Failed"},
          {"containerStatuses", json::array({{{"name", "worker"},
                                              {"state",
                                               {{"terminated",
                                                 {{"exitCode", code},
                                                  {"reason", reason},
                                                  {"finishedAt", "2025-01-01T00:00:05Z"}}}}}}})}};
}

json Waiting(const std::string& reason, const std::string& message) {
  return {{"phase", "Pending"},
          {"containerStatuses",
           json::array({{{"name", "worker"},
                         {"state", {{"waiting", {{"reason", reason}, {"message", message}}}}}}})}};
}

json Unschedulable(const std::string& message) {
  return {{"phase", "Pending"},
          {"conditions", json::array({{{"type", "PodScheduled"},
                                       {"status", "False"},
                                       {"reason", "Unschedulable"},
                                       {"message", message}}})}};
}

class KubernetesLauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestPki> pki = MakeTestPki("foak test cluster CA");
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
    ca_file_ = JoinPath(dir_.path(), "ca.crt");
    token_file_ = JoinPath(dir_.path(), "token");
    ASSERT_TRUE(WriteFileAtomically(ca_file_, pki_.ca_cert_pem).ok());
    ASSERT_TRUE(WriteFileAtomically(token_file_, "token-1\n").ok());
    api_.SetTokens({"token-1"});
    absl::StatusOr<std::unique_ptr<TlsTestServer>> server =
        TlsTestServer::Start(pki_, [this](const HttpRequest& r) { return api_.Handle(r); });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  void TearDown() override {
    if (launcher_ != nullptr) launcher_->Shutdown();
    launcher_.reset();
    EXPECT_TRUE(api_.Errors().empty()) << absl::StrJoin(api_.Errors(), "\n");
  }

  KubernetesLauncherOptions Options() {
    KubernetesLauncherOptions o;
    o.namespace_name = kNs;
    o.image = "registry.example.com/foak-worker:1.0";
    o.shared_volume_claim = "foak-shared";
    o.grace_period_ms = 0;
    o.poll_interval_ms = 20;
    o.deletion_wait_ms = 3000;
    o.client.api_server = server_->url();
    o.client.ca_file = ca_file_;
    o.client.token_file = token_file_;
    o.client.request_timeout_ms = 5000;
    return o;
  }

  void Start(KubernetesLauncherOptions options) {
    absl::StatusOr<std::unique_ptr<KubernetesLauncher>> launcher =
        KubernetesLauncher::Create(std::move(options), recorder_.Callbacks());
    ASSERT_TRUE(launcher.ok()) << launcher.status();
    launcher_ = std::move(*launcher);
  }
  void Start() { Start(Options()); }

  static LaunchRequest Request(const std::string& job_id, int64_t nodes = 1, int64_t ranks = 1,
                               int64_t gpus = 0) {
    LaunchRequest r;
    r.job_id = job_id;
    r.attempt = 0;
    r.gang.nodes = nodes;
    r.gang.ranks_per_node = ranks;
    r.gang.gpus_per_node = gpus;
    r.gang.worker_args = {"train", "--job",
                          absl::StrCat("/shared/foakd/jobs/", job_id, "/job-0.json")};
    r.gang.env = {{"FOAK_JOB_ID", job_id}, {"FOAK_JOB_TOKEN", "secret"}};
    return r;
  }

  // Waits until the launcher has polled the fake `n` more times.
  void WaitPolls(int n) {
    const int target = api_.Count("get-job") + n;
    ASSERT_TRUE(Eventually([&] { return api_.Count("get-job") >= target; }));
  }

  testing::TempDir dir_{"kube_launcher"};
  TestPki pki_;
  std::string ca_file_;
  std::string token_file_;
  FakeKubeApi api_{kNs};
  std::unique_ptr<TlsTestServer> server_;
  Recorder recorder_;
  std::unique_ptr<KubernetesLauncher> launcher_;
};

TEST_F(KubernetesLauncherTest, CreatesTheJobThenItsServiceForAGpuGang) {
  Start();
  LaunchRequest r = Request("job-0000000000000abc", 2, 8, 8);
  r.attempt = 1;
  r.gang.node_selector = {{"nvidia.com/gpu.product", "NVIDIA-H200"}};
  Toleration t;
  t.key = "nvidia.com/gpu";
  t.op = "Exists";
  t.effect = "NoSchedule";
  r.gang.tolerations = {t};
  r.gang.queue = "team-a";
  ASSERT_TRUE(launcher_->Launch(r).ok());
  EXPECT_TRUE(launcher_->IsRunning(r.job_id));
  EXPECT_EQ(launcher_->Launch(r).code(), absl::StatusCode::kFailedPrecondition);

  const std::string name = "foak-job-0000000000000abc-1";
  const std::vector<std::string> requests = api_.Requests();
  ASSERT_GE(requests.size(), 2u);
  EXPECT_EQ(requests[0], absl::StrCat("create-job POST /apis/batch/v1/namespaces/", kNs, "/jobs"));
  EXPECT_EQ(requests[1], absl::StrCat("create-service POST /api/v1/namespaces/", kNs, "/services"));
  json job = api_.Bodies("create-job").at(0);
  EXPECT_EQ(job["metadata"]["name"], name);
  EXPECT_EQ(job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"], "team-a");
  EXPECT_EQ(job["metadata"]["labels"]["app.kubernetes.io/managed-by"], "foakd");
  EXPECT_EQ(job["metadata"]["labels"]["app.kubernetes.io/instance"], "foakd");
  EXPECT_EQ(job["metadata"]["labels"]["foak.dev/job-id"], r.job_id);
  EXPECT_EQ(job["metadata"]["labels"]["foak.dev/attempt"], "1");
  EXPECT_EQ(job["metadata"]["annotations"]["foak.dev/job-id"], r.job_id);
  EXPECT_EQ(job["spec"]["suspend"], true);
  EXPECT_EQ(job["spec"]["completionMode"], "Indexed");
  EXPECT_EQ(job["spec"]["completions"], 2);
  EXPECT_EQ(job["spec"]["parallelism"], 2);
  EXPECT_EQ(job["spec"]["backoffLimit"], 0);
  json& pod = job["spec"]["template"]["spec"];
  EXPECT_EQ(job["spec"]["template"]["metadata"]["labels"]["foak.dev/job-id"], r.job_id);
  EXPECT_EQ(pod["subdomain"], name);
  EXPECT_EQ(pod["nodeSelector"]["nvidia.com/gpu.product"], "NVIDIA-H200");
  EXPECT_EQ(pod["tolerations"], json::parse(R"([{"key":"nvidia.com/gpu","operator":"Exists",
                                                 "effect":"NoSchedule"}])"));
  json& container = pod["containers"][0];
  EXPECT_EQ(container["image"], "registry.example.com/foak-worker:1.0");
  EXPECT_EQ(container["resources"]["limits"]["nvidia.com/gpu"], "8");
  EXPECT_EQ(container["command"][6], "--master-addr");
  EXPECT_EQ(container["command"][7], name + "-0." + name);
  EXPECT_EQ(pod["volumes"], json::parse(R"([
      {"name":"dshm","emptyDir":{"medium":"Memory","sizeLimit":"16Gi"}},
      {"name":"shared","persistentVolumeClaim":{"claimName":"foak-shared"}}])"));
  EXPECT_EQ(container["volumeMounts"], json::parse(R"([{"name":"dshm","mountPath":"/dev/shm"},
                                                       {"name":"shared","mountPath":"/shared"}])"));
  json service = api_.Bodies("create-service").at(0);
  EXPECT_EQ(service["metadata"]["name"], name);
  EXPECT_EQ(service["spec"]["clusterIP"], "None");
  EXPECT_EQ(service["spec"]["ports"][0]["port"], 29500);
  EXPECT_EQ(service["metadata"]["ownerReferences"][0]["uid"],
            api_.Job(name)->at("metadata").at("uid"));

  // Waiting for Kueue is told once, and so is the admission.
  ASSERT_TRUE(
      Eventually([&] { return !recorder_.Lines("waiting for Kueue queue team-a").empty(); }));
  WaitPolls(5);
  EXPECT_EQ(recorder_.Lines("waiting for Kueue queue team-a").size(), 1u);
  api_.UpdateJob(name, [](json* j) { (*j)["spec"]["suspend"] = false; });
  ASSERT_TRUE(
      Eventually([&] { return !recorder_.Lines("admitted by Kueue queue team-a").empty(); }));
  // An unschedulable pod is told once per message, on the pod's first rank.
  const std::string pod1 = api_.AddPod(
      name, 1, Unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu."));
  ASSERT_TRUE(Eventually([&] { return !recorder_.Lines("Insufficient nvidia.com/gpu").empty(); }));
  WaitPolls(5);
  const std::vector<LogLine> lines = recorder_.Lines("Insufficient nvidia.com/gpu");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].text, absl::StrCat("kubernetes: pod ", pod1,
                                        " Pending: Unschedulable: 0/3 "
                                        "nodes are available: 3 Insufficient nvidia.com/gpu."));
  EXPECT_EQ(lines[0].rank, 8);
  EXPECT_EQ(lines[0].attempt, 1);
  EXPECT_EQ(recorder_.Lines("waiting for Kueue").size(), 1u);
  EXPECT_EQ(recorder_.Outcomes(), 0);
}

TEST_F(KubernetesLauncherTest, CompletedLeavesTheJobForItsTtl) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-ok")).ok());
  const std::string name = "foak-job-ok-0";
  const std::string pod = api_.AddPod(name, 0, Running());
  ASSERT_TRUE(Eventually([&] { return !recorder_.Lines(" running on node gpu-node-0").empty(); }));
  api_.SetPodStatus(pod, Terminated(0, "Completed"));
  api_.SetJobCondition(name, "Complete");
  std::optional<LaunchOutcome> o = recorder_.WaitOutcome("job-ok");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->state, JobState::kSucceeded);
  EXPECT_EQ(o->reason, kReasonCompleted);
  EXPECT_FALSE(launcher_->IsRunning("job-ok"));
  EXPECT_TRUE(api_.Job(name).has_value());  // left for ttlSecondsAfterFinished
  EXPECT_FALSE(api_.Service(name).has_value());
  EXPECT_EQ(api_.Count("delete-job"), 0);
  ASSERT_EQ(o->ranks.size(), 1u);
  EXPECT_EQ(o->ranks[0].exit_code, 0);
}

TEST_F(KubernetesLauncherTest, ExitCodeTwoIsAnInvalidJob) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-bad")).ok());
  const std::string pod = api_.AddPod("foak-job-bad-0", 0, Running());
  api_.SetLog(pod, "loading /shared/foakd/jobs/job-bad/job-0.json\nerror: model.path is empty\n");
  api_.SetPodStatus(pod, Terminated(2, "Error"));
  std::optional<LaunchOutcome> o = recorder_.WaitOutcome("job-bad");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->state, JobState::kFailed);
  EXPECT_EQ(o->reason, kReasonInvalidJob);
  EXPECT_FALSE(o->retryable);
  EXPECT_TRUE(absl::StrContains(o->message, "node 0 (rank 0) exited with code 2")) << o->message;
  EXPECT_TRUE(absl::StrContains(o->message, "error: model.path is empty")) << o->message;
  EXPECT_FALSE(api_.Job("foak-job-bad-0").has_value());
}

TEST_F(KubernetesLauncherTest, ExitCodeThreeIsANonFiniteStep) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-nan")).ok());
  const std::string pod = api_.AddPod("foak-job-nan-0", 0, Running());
  api_.SetLog(pod, "foak-worker: step 7: the loss is nan and the gradient norm nan\n");
  api_.SetPodStatus(pod, Terminated(3, "Error"));
  std::optional<LaunchOutcome> o = recorder_.WaitOutcome("job-nan");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->state, JobState::kFailed);
  EXPECT_EQ(o->reason, kReasonNonFinite);
  EXPECT_FALSE(o->retryable);
  EXPECT_TRUE(absl::StrContains(o->message, "exited with code 3 (a NaN or infinite loss"))
      << o->message;
  EXPECT_TRUE(absl::StrContains(o->message, "step 7: the loss is nan")) << o->message;
}

TEST_F(KubernetesLauncherTest, OomKilledIsKilledAndRetryable) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-oom", 1, 4, 4)).ok());
  const std::string pod = api_.AddPod("foak-job-oom-0", 0, Terminated(137, "OOMKilled"));
  std::optional<LaunchOutcome> o = recorder_.WaitOutcome("job-oom");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->reason, kReasonKilled);
  EXPECT_TRUE(o->retryable);
  EXPECT_TRUE(
      absl::StrContains(o->message, "node 0 (ranks 0-3) was killed: out of memory (OOMKilled"))
      << o->message;
  EXPECT_TRUE(absl::StrContains(o->message, "is empty")) << o->message;
}

TEST_F(KubernetesLauncherTest, AFailedNodeStopsTheGang) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-gang", 2, 4, 4)).ok());
  const std::string name = "foak-job-gang-0";
  const std::string pod0 = api_.AddPod(name, 0, Running());
  // A terminating pod of an earlier Job with the same labels is not this gang's.
  api_.AddPod(name, 1, Terminated(1, "Error"), /*owned=*/false);
  WaitPolls(3);
  EXPECT_EQ(recorder_.Outcomes(), 0);
  const std::string pod1 = api_.AddPod(name, 1, Running());
  api_.SetLog(pod1, "step 10 loss 2.31\nRuntimeError: CUDA error: an illegal memory access\n");
  api_.SetPodStatus(pod1, Terminated(1, "Error"));
  std::optional<LaunchOutcome> o = recorder_.WaitOutcome("job-gang");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->state, JobState::kFailed);
  EXPECT_EQ(o->reason, kReasonGangMemberFailed);
  EXPECT_TRUE(o->retryable);
  EXPECT_TRUE(absl::StrContains(
      o->message, "node 1 (ranks 4-7) exited with code 1; the other 1 node(s) were stopped"))
      << o->message;
  EXPECT_TRUE(absl::StrContains(o->message, "RuntimeError: CUDA error: an illegal memory access"))
      << o->message;
  EXPECT_TRUE(absl::StrContains(o->message, pod1)) << o->message;
  const std::vector<json> deletes = api_.Bodies("delete-job");
  ASSERT_FALSE(deletes.empty());
  EXPECT_EQ(deletes[0]["propagationPolicy"], "Background");
  EXPECT_EQ(deletes[0]["preconditions"]["uid"],
            api_.Bodies("create-service")[0]["metadata"]["ownerReferences"][0]["uid"]);
  EXPECT_FALSE(api_.Job(name).has_value());
  EXPECT_FALSE(api_.Service(name).has_value());
  ASSERT_EQ(o->ranks.size(), 4u);
  EXPECT_EQ(o->ranks[0].rank, 4);
  EXPECT_EQ(o->ranks[0].exit_code, 1);
  (void)pod0;
}

TEST_F(KubernetesLauncherTest, AnImageThatCannotBePulledFailsTheLaunchAfterTheTimeout) {
  KubernetesLauncherOptions o = Options();
  o.pod_start_timeout_ms = 300;
  Start(o);
  ASSERT_TRUE(launcher_->Launch(Request("job-pull")).ok());
  const absl::Time start = absl::Now();
  api_.AddPod("foak-job-pull-0", 0,
              Waiting("ImagePullBackOff",
                      "Back-off pulling image \"registry.example.com/foak-worker:1.0\""));
  ASSERT_TRUE(Eventually([&] { return !recorder_.Lines("waiting: ImagePullBackOff").empty(); }));
  std::optional<LaunchOutcome> out = recorder_.WaitOutcome("job-pull");
  ASSERT_TRUE(out.has_value());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(out->reason, kReasonLaunchFailed);
  EXPECT_FALSE(out->retryable);
  EXPECT_TRUE(absl::StrContains(out->message, "ImagePullBackOff: Back-off pulling image"))
      << out->message;
  EXPECT_EQ(recorder_.Lines("waiting: ImagePullBackOff").size(), 1u);
  EXPECT_FALSE(api_.Job("foak-job-pull-0").has_value());

  // A name that can never be pulled fails at once.
  ASSERT_TRUE(launcher_->Launch(Request("job-name")).ok());
  api_.AddPod("foak-job-name-0", 0, Waiting("InvalidImageName", "couldn't parse image name"));
  out = recorder_.WaitOutcome("job-name");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->reason, kReasonLaunchFailed);
  EXPECT_TRUE(absl::StrContains(out->message, "InvalidImageName: couldn't parse image name"))
      << out->message;
}

TEST_F(KubernetesLauncherTest, CancelDeletesInTheForegroundAndEndsWhenTheJobIsGone) {
  Start();
  EXPECT_EQ(launcher_->Cancel("job-none").code(), absl::StatusCode::kNotFound);
  api_.SetFinishForegroundDeletion(false);
  ASSERT_TRUE(launcher_->Launch(Request("job-cancel", 2, 1, 1)).ok());
  const std::string name = "foak-job-cancel-0";
  api_.AddPod(name, 0, Running());
  api_.AddPod(name, 1, Running());
  ASSERT_TRUE(launcher_->Cancel("job-cancel").ok());
  ASSERT_TRUE(Eventually([&] { return api_.Count("delete-job") > 0; }));
  EXPECT_EQ(api_.Bodies("delete-job")[0]["propagationPolicy"], "Foreground");
  WaitPolls(3);  // still being deleted: still running
  EXPECT_TRUE(launcher_->IsRunning("job-cancel"));
  EXPECT_FALSE(recorder_.Outcome("job-cancel").has_value());
  EXPECT_FALSE(api_.Service(name).has_value());
  api_.FinishDeletion(name);
  std::optional<LaunchOutcome> o = recorder_.WaitOutcome("job-cancel");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->state, JobState::kCancelled);
  EXPECT_EQ(o->reason, kReasonCancelled);
  EXPECT_FALSE(o->retryable);
  EXPECT_FALSE(launcher_->IsRunning("job-cancel"));
}

TEST_F(KubernetesLauncherTest, ForbiddenCreateIsALaunchErrorAndLeavesNothing) {
  Start();
  const std::string rbac =
      "jobs.batch is forbidden: User \"system:serviceaccount:foak-test:foakd\" cannot create "
      "resource \"jobs\" in API group \"batch\" in the namespace \"foak-test\"";
  api_.Fail("create-job", 403, rbac);
  absl::Status s = launcher_->Launch(Request("job-rbac"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(s.message(), "Job foak-test/foak-job-rbac-0")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), rbac)) << s;
  EXPECT_FALSE(launcher_->IsRunning("job-rbac"));

  // The Service fails: the Job is deleted again.
  api_.Fail("create-service", 422, "Service \"x\" is invalid: spec.ports[0].port: Invalid value");
  s = launcher_->Launch(Request("job-svc"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "Service foak-test/foak-job-svc-0")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "spec.ports[0].port: Invalid value")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "its Job was deleted again")) << s;
  EXPECT_TRUE(api_.JobNames().empty());
  EXPECT_TRUE(api_.ServiceNames().empty());
  EXPECT_EQ(launcher_->RunningJobs(), 0);

  // A Job of the same name that someone else made is not touched.
  json theirs = {
      {"apiVersion", "batch/v1"}, {"kind", "Job"}, {"metadata", {{"name", "foak-job-x-0"}}}};
  api_.AddJob(theirs);
  s = launcher_->Launch(Request("job-x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(absl::StrContains(s.message(), "kubectl delete job -n foak-test foak-job-x-0")) << s;
  EXPECT_TRUE(api_.Job("foak-job-x-0").has_value());
  EXPECT_EQ(api_.Count("delete-job"), 1);  // only job-svc's
  EXPECT_EQ(recorder_.Outcomes(), 0);
}

TEST_F(KubernetesLauncherTest, AServerCertificateFromAnotherCaIsRefused) {
  absl::StatusOr<TestPki> other = MakeTestPki("someone else's CA");
  ASSERT_TRUE(other.ok());
  const std::string other_ca = JoinPath(dir_.path(), "other-ca.crt");
  ASSERT_TRUE(WriteFileAtomically(other_ca, other->ca_cert_pem).ok());
  KubernetesLauncherOptions o = Options();
  o.client.ca_file = other_ca;
  Start(o);
  absl::Status s = launcher_->Launch(Request("job-tls"));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(s.message(), "certificate verification failed")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), server_->url())) << s;
  EXPECT_TRUE(api_.Requests().empty());
  EXPECT_GE(server_->failed_handshakes(), 1);
  EXPECT_FALSE(launcher_->IsRunning("job-tls"));
}

TEST_F(KubernetesLauncherTest, KillOrphansDeletesOnlyThisInstancesJobs) {
  auto job = [](const std::string& name, const std::string& id, const std::string& instance) {
    return json{{"apiVersion", "batch/v1"},
                {"kind", "Job"},
                {"metadata",
                 {{"name", name},
                  {"labels",
                   {{"app.kubernetes.io/managed-by", "foakd"},
                    {"app.kubernetes.io/instance", instance},
                    {"foak.dev/job-id", id}}},
                  {"annotations", {{"foak.dev/job-id", id}}}}},
                {"spec",
                 {{"template",
                   {{"metadata",
                     {{"labels",
                       {{"app.kubernetes.io/managed-by", "foakd"},
                        {"app.kubernetes.io/instance", instance}}}}}}}}}};
  };
  api_.AddJob(job("foak-job-a-2", "job-a", "foakd"));
  api_.AddJob(job("foak-job-b-0", "Job_B", "foakd"));
  api_.AddJob(job("foak-job-c-0", "job-c", "other-foakd"));
  api_.AddJob({{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"metadata", {{"name", "unrelated"}}}});
  api_.AddPod("foak-job-a-2", 0, Running());
  Start();
  absl::StatusOr<std::vector<std::string>> ids = launcher_->KillOrphans("/ignored");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<std::string>{"Job_B", "job-a"}));
  EXPECT_EQ(api_.JobNames(), (std::vector<std::string>{"foak-job-c-0", "unrelated"}));
  EXPECT_TRUE(api_.PodNames().empty());
  EXPECT_EQ(api_.Count("delete-service"), 2);
  const std::vector<std::string> requests = api_.Requests();
  EXPECT_EQ(requests.at(0), absl::StrCat("list-jobs GET /apis/batch/v1/namespaces/", kNs,
                                         "/jobs?labelSelector=app.kubernetes.io%2Finstance%3Dfoakd%"
                                         "2Capp.kubernetes.io%2Fmanaged-by%3Dfoakd"));
  for (const json& body : api_.Bodies("delete-job"))
    EXPECT_EQ(body["propagationPolicy"], "Background");
}

TEST_F(KubernetesLauncherTest, TheTokenFileIsReadForEveryRequest) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-token")).ok());
  WaitPolls(2);
  api_.SetTokens({"token-1", "token-2"});  // while the file changes
  ASSERT_TRUE(WriteFileAtomically(token_file_, "token-2\n").ok());
  ASSERT_TRUE(Eventually([&] { return api_.TokensSeen().back() == "token-2"; }));
  api_.SetTokens({"token-2"});
  WaitPolls(3);
  const std::vector<std::string> seen = api_.TokensSeen();
  EXPECT_EQ(seen.front(), "token-1");
  EXPECT_EQ(seen.back(), "token-2");
}

TEST_F(KubernetesLauncherTest, AJobDeletedBySomeoneElseFailsRetryably) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-gone")).ok());
  api_.AddPod("foak-job-gone-0", 0, Running());
  WaitPolls(2);
  api_.RemoveJob("foak-job-gone-0");
  std::optional<LaunchOutcome> o = recorder_.WaitOutcome("job-gone");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->reason, kReasonWorkerError);
  EXPECT_TRUE(o->retryable);
  EXPECT_TRUE(absl::StrContains(o->message, "was deleted while it ran, not by foakd"))
      << o->message;
}

TEST_F(KubernetesLauncherTest, ApiOutagesAreWaitedOutThenFailTheJob) {
  KubernetesLauncherOptions o = Options();
  o.api_failure_timeout_ms = 300;
  o.deletion_wait_ms = 200;  // its pods cannot be listed: do not wait long for them
  Start(o);
  ASSERT_TRUE(launcher_->Launch(Request("job-api")).ok());
  api_.Fail("list-pods", 503, "etcdserver: leader changed", 3);  // a short outage
  WaitPolls(6);
  EXPECT_EQ(recorder_.Outcomes(), 0);
  api_.Fail("list-pods", 503, "etcdserver: request timed out", -1);
  std::optional<LaunchOutcome> out = recorder_.WaitOutcome("job-api");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->reason, kReasonLaunchFailed);
  EXPECT_TRUE(absl::StrContains(out->message, "etcdserver: request timed out")) << out->message;
  EXPECT_TRUE(absl::StrContains(out->message, "HTTP 503")) << out->message;
  api_.Fail("list-pods", 503, "", 0);
}

TEST_F(KubernetesLauncherTest, ShutdownCancelsEverythingAndLaunchesNoMore) {
  Start();
  ASSERT_TRUE(launcher_->Launch(Request("job-1")).ok());
  ASSERT_TRUE(launcher_->Launch(Request("job-2", 2, 2, 0)).ok());
  EXPECT_EQ(launcher_->RunningJobs(), 2);
  launcher_->Shutdown();
  EXPECT_EQ(recorder_.Outcomes(), 2);
  EXPECT_EQ(recorder_.Outcome("job-1")->state, JobState::kCancelled);
  EXPECT_EQ(recorder_.Outcome("job-2")->reason, kReasonCancelled);
  EXPECT_TRUE(api_.JobNames().empty());
  EXPECT_EQ(launcher_->Launch(Request("job-3")).code(), absl::StatusCode::kUnavailable);
  launcher_->Shutdown();  // idempotent
}

TEST_F(KubernetesLauncherTest, CreateChecksTheOptions) {
  KubernetesLauncherOptions o = Options();
  o.image = "";
  absl::StatusOr<std::unique_ptr<KubernetesLauncher>> l = KubernetesLauncher::Create(o, {});
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(l.status().message(), "image")) << l.status();
  o = Options();
  o.client.api_server = "http://127.0.0.1:8001";
  l = KubernetesLauncher::Create(o, {});
  EXPECT_TRUE(absl::StrContains(l.status().message(), "https://")) << l.status();
}

}  // namespace
}  // namespace foak
