// foakd with --launcher kubernetes, end to end against a fake cluster: the
// real foakd binary talks HTTPS to FakeKubeApi (tests/unit/fake_kube_api.h,
// which checks every request: path, bearer token, bodies) and the test plays
// the kubelet. It runs the command of the pod foakd asked for -- the Job's
// own container command and environment, with the image's foak-worker
// replaced by the one built here and the headless Service's DNS name
// resolved to 127.0.0.1, as cluster DNS would -- so the real worker trains,
// reports to foakd over gRPC, and foakd follows the pod's and the Job's
// status to SUCCEEDED. A cancel deletes the Job and ends CANCELLED.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/net_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/foakd_process.h"
#include "tests/testing/worker_run.h"
#include "tests/unit/fake_kube_api.h"
#include "tests/unit/tls_test_server.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using foak::v1::Job;
using Clock = std::chrono::steady_clock;

constexpr char kNs[] = "foak-e2e";

bool WaitFor(const std::function<bool()>& done, int seconds = 60) {
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

Json PodRunning() {
  return {{"phase", "Running"},
          {"conditions", Json::array({{{"type", "PodScheduled"}, {"status", "True"}}})},
          {"containerStatuses",
           Json::array({{{"name", "worker"},
                         {"state", {{"running", {{"startedAt", "2026-11-29T00:00:00Z"}}}}}}})}};
}

Json PodTerminated(int code) {
  return {{"phase", code == 0 ? "Succeeded" : "Failed"},
          {"containerStatuses",
           Json::array({{{"name", "worker"},
                         {"state",
                          {{"terminated",
                            {{"exitCode", code},
                             {"reason", code == 0 ? "Completed" : "Error"},
                             {"finishedAt", "2026-11-29T00:00:09Z"}}}}}}})}};
}

class FoakdKubernetes : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestPki> pki = MakeTestPki("foak e2e cluster CA");
    ASSERT_TRUE(pki.ok()) << pki.status();
    const std::string ca = JoinPath(dir_.path(), "ca.crt");
    const std::string token = JoinPath(dir_.path(), "token");
    ASSERT_TRUE(WriteFileAtomically(ca, pki->ca_cert_pem).ok());
    ASSERT_TRUE(WriteFileAtomically(token, "foakd-sa-token\n").ok());
    api_.SetTokens({"foakd-sa-token"});
    absl::StatusOr<std::unique_ptr<TlsTestServer>> server =
        TlsTestServer::Start(*pki, [this](const HttpRequest& r) { return api_.Handle(r); });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);

    // The "shared volume": mounted at the same path in foakd and the pods.
    shared_ = JoinPath(dir_.path(), "shared");
    model_ = JoinPath(shared_, "models/debug");
    testing::WorkerResult r = testing::RunWorkerCapture(
        "init-model --config " + std::string(FOAK_SOURCE_DIR) +
        "/examples/debug_model/config.json --out " + model_ + " --seed 1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    foakd_ = std::make_unique<testing::FoakdProcess>(
        JoinPath(dir_.path(), "foakd-data"),
        std::vector<std::string>{"--launcher=kubernetes",
                                 "--kube_api_server=" + server_->url(),
                                 "--kube_ca_file=" + ca,
                                 "--kube_token_file=" + token,
                                 std::string("--kube_namespace=") + kNs,
                                 "--kube_image=registry.example.com/foak-worker:e2e",
                                 "--kube_shared_claim=foak-shared",
                                 "--kube_shared_mount=" + shared_,
                                 "--shared_dir=" + JoinPath(shared_, "foakd"),
                                 "--kube_poll_interval_s=0.1"});
    ASSERT_TRUE(foakd_->Start());
  }

  void TearDown() override {
    foakd_.reset();
    EXPECT_TRUE(api_.Errors().empty()) << absl::StrJoin(api_.Errors(), "\n");
  }

  foak::v1::JobSpec Spec(const Json& resources) {
    Json j = {{"name", "on-kubernetes"},
              {"model", model_},
              {"dataset",
               {{"train", std::string(FOAK_SOURCE_DIR) + "/examples/data/arith_train.jsonl"},
                {"format", "chat"}}},
              {"hyperparameters",
               {{"max_steps", 4},
                {"batch_size", 2},
                {"max_seq_len", 64},
                {"logging_steps", 1},
                {"precision", "fp32"}}},
              {"resources", resources}};
    foak::v1::JobSpec spec;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(j.dump(), &spec).ok());
    return spec;
  }

  Job Create(const foak::v1::JobSpec& spec) {
    grpc::ClientContext ctx;
    foak::v1::CreateJobRequest req;
    *req.mutable_spec() = spec;
    Job job;
    grpc::Status s = foakd_->jobs().CreateJob(&ctx, req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  Job Get(const std::string& id) {
    grpc::ClientContext ctx;
    foak::v1::GetJobRequest req;
    req.set_id(id);
    Job job;
    EXPECT_TRUE(foakd_->jobs().GetJob(&ctx, req, &job).ok());
    return job;
  }

  // The Job foakd created for attempt 0 of `id`, once it is there.
  Json WaitForKubeJob(const std::string& id) {
    std::optional<Json> job;
    EXPECT_TRUE(WaitFor([&] {
      for (const std::string& name : api_.JobNames()) {
        std::optional<Json> j = api_.Job(name);
        if (j && j->at("metadata").at("annotations").value("foak.dev/job-id", "") == id) {
          job = j;
          return true;
        }
      }
      return false;
    })) << "no Kubernetes Job for " << id << "; foakd's log:\n" << foakd_->Log();
    return job.value_or(Json::object());
  }

  // Runs pod `index` of `job` here as the kubelet would run its container:
  // the pod's command and environment, JOB_COMPLETION_INDEX set. Returns
  // the exit code.
  int RunPod(const Json& job, int index, const std::string& log) {
    const Json& container = job["spec"]["template"]["spec"]["containers"][0];
    std::vector<std::string> argv = container["command"].get<std::vector<std::string>>();
    EXPECT_EQ(argv[0], "/usr/local/bin/foak-worker");
    argv[0] = FOAK_WORKER_BIN;
    const std::string port = absl::StrCat(FreeLoopbackPort());
    for (size_t i = 1; i + 1 < argv.size(); ++i) {
      if (argv[i] == "--master-addr") argv[i + 1] = "127.0.0.1";  // cluster DNS, here
      if (argv[i] == "--master-port") argv[i + 1] = port;
    }
    std::vector<std::pair<std::string, std::string>> env;
    for (const Json& e : container["env"]) env.emplace_back(e["name"], e["value"]);
    env.emplace_back("JOB_COMPLETION_INDEX", absl::StrCat(index));
    const pid_t pid = fork();
    if (pid == 0) {
      FILE* f = freopen(log.c_str(), "w", stdout);
      f = freopen(log.c_str(), "a", stderr);
      (void)f;
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  testing::TempDir dir_{"foakd_kubernetes"};
  FakeKubeApi api_{kNs};
  std::unique_ptr<TlsTestServer> server_;
  std::string shared_, model_;
  std::unique_ptr<testing::FoakdProcess> foakd_;
};

TEST_F(FoakdKubernetes, JobRunsAsAnIndexedJobWhosePodsTrainAndReport) {
  // Two CPU ranks join over Gloo; a worker built without it (pip's LibTorch
  // on the GPU host) runs the same path with one.
  const int ranks = FOAK_WORKER_HAS_GLOO ? 2 : 1;
  const Job created = Create(Spec({{"processes", ranks}}));
  const Json job = WaitForKubeJob(created.id());
  const std::string name = job["metadata"]["name"];
  // What foakd asked the cluster for: one node of 2 CPU ranks, the shared
  // volume, the worker's identity and where to report.
  EXPECT_EQ(job["spec"]["completions"], 1);
  EXPECT_EQ(job["spec"]["backoffLimit"], 0);
  const Json& container = job["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(container["image"], "registry.example.com/foak-worker:e2e");
  const std::vector<std::string> command = container["command"];
  EXPECT_EQ(absl::StrJoin(command.begin() + 1, command.begin() + 6, " "),
            absl::StrCat("launch --nproc-per-node ", ranks, " --nnodes 1"));
  EXPECT_EQ(command.back(),
            JoinPath(shared_, absl::StrCat("foakd/jobs/", created.id(), "/job-0.json")));
  std::map<std::string, std::string> env;
  for (const Json& e : container["env"]) env[e["name"]] = e["value"];
  EXPECT_EQ(env["FOAK_JOB_ID"], created.id());
  EXPECT_EQ(env["FOAK_COORDINATOR"], foakd_->address());
  EXPECT_FALSE(env["FOAK_JOB_TOKEN"].empty());
  EXPECT_TRUE(api_.Service(name).has_value()) << "the rendezvous Service";
  EXPECT_EQ(Get(created.id()).message(),
            absl::StrCat("on Kubernetes: 1 node x ", ranks, " CPU ranks, attempt 0"));

  // The kubelet's part: the pod runs, then ends; the Job completes.
  const std::string pod = api_.AddPod(name, 0, PodRunning());
  const std::string log = JoinPath(dir_.path(), "pod-0.log");
  ASSERT_EQ(RunPod(job, 0, log), 0) << ReadFileToString(log).value_or("");
  api_.SetPodStatus(pod, PodTerminated(0));
  api_.SetJobCondition(name, "Complete");
  ASSERT_TRUE(WaitFor([&] { return Get(created.id()).state() == Job::SUCCEEDED; }))
      << Job::State_Name(Get(created.id()).state()) << "; foakd's log:\n" << foakd_->Log();
  const Job done = Get(created.id());
  EXPECT_EQ(done.progress().step(), 4) << "the pod's worker reported its steps to foakd";
  if (ranks == 2) {
    EXPECT_EQ(done.progress().rank_peak_memory_bytes_size(), 2) << "both ranks reported";
  }
  EXPECT_TRUE(PathExists(JoinPath(done.output_dir(), "final/config.json")))
      << "the output lands on the shared volume: " << done.output_dir();
  // A succeeded Job stays for its TTL (kubectl logs); its Service goes.
  EXPECT_TRUE(api_.Job(name).has_value());
  EXPECT_TRUE(WaitFor([&] { return !api_.Service(name).has_value(); }));
}

TEST_F(FoakdKubernetes, MultiNodeGpuJobIsShapedForTheClusterAndCancelDeletesIt) {
  const Job created = Create(Spec(Json::parse(R"({
      "gpus": 4, "nodes": 2, "queue": "team-a",
      "node_selector": {"pool": "h100"},
      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})")));
  const Json job = WaitForKubeJob(created.id());
  const std::string name = job["metadata"]["name"];
  EXPECT_EQ(job["spec"]["completions"], 2);
  EXPECT_EQ(job["spec"]["parallelism"], 2);
  EXPECT_EQ(job["spec"]["suspend"], true) << "Kueue admits it";
  EXPECT_EQ(job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"], "team-a");
  const Json& pod = job["spec"]["template"]["spec"];
  EXPECT_EQ(pod["nodeSelector"]["pool"], "h100");
  EXPECT_EQ(pod["tolerations"][0]["key"], "nvidia.com/gpu");
  EXPECT_EQ(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "4");
  EXPECT_EQ(Get(created.id()).message(), "on Kubernetes: 2 nodes x 4 GPUs, attempt 0");
  const Json worker_job = Json::parse(ReadFileToString(JoinPath(
      shared_, absl::StrCat("foakd/jobs/", created.id(), "/job-0.json"))).value());
  EXPECT_EQ(worker_job["device"], "cuda");

  grpc::ClientContext ctx;
  foak::v1::CancelJobRequest cancel;
  cancel.set_id(created.id());
  Job after;
  ASSERT_TRUE(foakd_->jobs().CancelJob(&ctx, cancel, &after).ok());
  ASSERT_TRUE(WaitFor([&] { return Get(created.id()).state() == Job::CANCELLED; }))
      << Job::State_Name(Get(created.id()).state()) << "; foakd's log:\n" << foakd_->Log();
  EXPECT_FALSE(api_.Job(name).has_value()) << "deleted";
  EXPECT_GE(api_.Count("delete-job"), 1);
}

// A bad Kubernetes setting stops foakd at start with the flag named.
TEST(FoakdKubernetesFlags, BadSettingsNameTheFlag) {
  testing::TempDir dir("foakd_kube_flags");
  auto run = [&](const std::string& extra) {
    const std::string cmd = absl::StrCat(FOAKD_BIN, " --launcher=kubernetes --data_dir=", dir.path(),
                                         " --kube_namespace=x --kube_api_server=https://127.0.0.1:1 ",
                                         extra, " 2>&1");
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    while (p != nullptr && fgets(buf, sizeof buf, p) != nullptr) out += buf;
    const int status = p != nullptr ? pclose(p) : -1;
    EXPECT_NE(status, 0) << out;
    return out;
  };
  EXPECT_TRUE(absl::StrContains(run(""), "foakd: --kube_image = ''; expected the worker image"));
  EXPECT_TRUE(absl::StrContains(run("--kube_image=i"), "foakd: --kube_shared_claim = ''"));
  EXPECT_TRUE(absl::StrContains(run("--kube_image=i --kube_shared_claim=c --kube_shm_size=lots"),
                                "foakd: --kube_shm_size = 'lots'; expected a Kubernetes quantity"));
  EXPECT_TRUE(absl::StrContains(run("--kube_image=i --kube_shared_claim=c --launcher=cloud"),
                                "--launcher = 'cloud'; expected local"));
}

}  // namespace
}  // namespace foak
