// foakd's security, in process and over real sockets: TLS and mutual TLS on
// the gRPC port (certificates made at test time, tls_test_server.h), API
// tokens bound to tenants, per-job worker tokens, and foakctl's --token and
// --tls-* flags against it. Every rejection has its test; so has each happy
// path. The worker is a shell script that records its environment and
// sleeps, so a job stays STARTING until a test reports for it.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/testing/run_foakctl.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "foak/v1/file_service.grpc.pb.h"
#include "foak/v1/job_service.grpc.pb.h"
#include "foak/v1/worker_service.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/domain/worker_tokens.h"
#include "server/transport/foakd.h"
#include "tests/testing/worker_run.h"
#include "tests/unit/tls_test_server.h"
#include "worker/report/coordinator_reporter.h"

namespace foak {
namespace {

constexpr char kAliceToken[] = "alice-0123456789abcdef";
constexpr char kBobToken[] = "bob-0123456789abcdefgh";

class FoakdSecurity : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestPki> pki = MakeTestPki("foak test CA");
    absl::StatusOr<TestPki> other = MakeTestPki("some other CA");
    ASSERT_TRUE(pki.ok() && other.ok());
    pki_ = *pki;
    other_ = *other;
    absl::StatusOr<TestClientCert> client = MakeTestClientCert(pki_, "foakctl");
    absl::StatusOr<TestClientCert> worker = MakeTestClientCert(pki_, "foak-worker");
    absl::StatusOr<TestClientCert> stranger = MakeTestClientCert(other_, "stranger");
    ASSERT_TRUE(client.ok() && worker.ok() && stranger.ok());
    client_ = *client;
    stranger_ = *stranger;
    Write("ca.pem", pki_.ca_cert_pem);
    Write("other-ca.pem", other_.ca_cert_pem);
    Write("server.pem", pki_.server_cert_pem);
    Write("server.key", pki_.server_key_pem);
    Write("other-server.key", other_.server_key_pem);
    Write("client.pem", client_.cert_pem);
    Write("client.key", client_.key_pem);
    Write("worker.pem", worker->cert_pem);
    Write("worker.key", worker->key_pem);
    Write("tokens", absl::StrCat("# tenants\nalice ", kAliceToken, "\nbob sha256:",
                                 Sha256Hex(kBobToken), "\n"));
    // Records its environment in the job folder (its working directory), then
    // waits to be stopped.
    Write("worker.sh", "#!/bin/sh\nenv > worker-env.txt\nexec sleep 60\n");
    ASSERT_EQ(chmod(Path("worker.sh").c_str(), 0755), 0);
  }

  std::string Path(const std::string& name) const { return JoinPath(dir_.path(), name); }
  void Write(const std::string& name, const std::string& text) {
    ASSERT_TRUE(WriteFileAtomically(Path(name), text).ok());
  }

  FoakdOptions Options() const {
    FoakdOptions o;
    o.listen_address = "127.0.0.1:0";
    o.metrics_address = "";
    o.data_dir = Path("data");
    o.worker_path = Path("worker.sh");
    o.cpu_slots = 4;
    o.grace_period_ms = 200;
    o.shutdown_timeout_ms = 500;
    return o;
  }
  FoakdOptions TlsOptions(bool mutual) const {
    FoakdOptions o = Options();
    o.tls.cert_file = Path("server.pem");
    o.tls.key_file = Path("server.key");
    o.tls.worker_ca_file = Path("ca.pem");
    if (mutual) {
      o.tls.client_ca_file = Path("ca.pem");
      o.tls.worker_cert_file = Path("worker.pem");
      o.tls.worker_key_file = Path("worker.key");
    }
    return o;
  }

  void Start(FoakdOptions options) {
    absl::StatusOr<std::unique_ptr<Foakd>> foakd = Foakd::Start(std::move(options));
    ASSERT_TRUE(foakd.ok()) << foakd.status();
    foakd_ = *std::move(foakd);
    address_ = absl::StrCat("127.0.0.1:", foakd_->grpc_port());
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& ca,
                                                const TestClientCert* cert = nullptr) const {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ca;
    if (cert != nullptr) {
      o.pem_cert_chain = cert->cert_pem;
      o.pem_private_key = cert->key_pem;
    }
    return grpc::SslCredentials(o);
  }
  std::unique_ptr<foak::v1::JobService::Stub> Jobs(
      std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials()) {
    return foak::v1::JobService::NewStub(grpc::CreateChannel(address_, credentials));
  }
  std::unique_ptr<foak::v1::FileService::Stub> Files() {
    return foak::v1::FileService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  // A context with a deadline and, unless empty, "authorization: Bearer <token>".
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  foak::v1::CreateJobRequest JobRequest(const std::string& train = "") const {
    const std::string spec = absl::StrCat(
        R"({"model": ")", FOAK_SOURCE_DIR, R"(/examples/debug_model", "dataset": {"train": ")",
        train.empty() ? absl::StrCat(FOAK_SOURCE_DIR, "/examples/data/arith_train.jsonl") : train,
        R"(", "format": "chat"}, "hyperparameters": {"max_steps": 2}})");
    foak::v1::CreateJobRequest request;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(spec, request.mutable_spec()).ok());
    return request;
  }

  grpc::Status Create(foak::v1::JobService::Stub* jobs, const std::string& token,
                      foak::v1::Job* job, const std::string& train = "",
                      const std::string& request_id = "") {
    foak::v1::CreateJobRequest request = JobRequest(train);
    request.set_request_id(request_id);
    return jobs->CreateJob(Context(token).get(), request, job);
  }

  grpc::Status Upload(const std::string& token, const std::string& bytes, foak::v1::File* file) {
    auto stub = Files();
    auto context = Context(token);
    auto writer = stub->UploadFile(context.get(), file);
    foak::v1::UploadFileRequest message;
    message.mutable_metadata()->set_filename("train.jsonl");
    message.mutable_metadata()->set_size_bytes(static_cast<int64_t>(bytes.size()));
    writer->Write(message);
    message.Clear();
    message.set_chunk(bytes);
    writer->Write(message);
    writer->WritesDone();
    return writer->Finish();
  }

  // One WorkerStarted report for `job_id` with `token`.
  grpc::Status Report(const std::string& job_id, const std::string& token) {
    auto stub = foak::v1::WorkerService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    auto context = Context(token);
    foak::v1::ReportEventsResponse response;
    auto writer = stub->ReportEvents(context.get(), &response);
    foak::v1::WorkerReport report;
    report.set_job_id(job_id);
    report.mutable_started()->set_max_steps(2);
    writer->Write(report);
    writer->WritesDone();
    return writer->Finish();
  }

  std::string WorkerToken(const std::string& job_id) const {
    auto tokens = WorkerTokens::Open(JoinPath(Path("data"), "worker_token.key"));
    EXPECT_TRUE(tokens.ok());
    return tokens.ok() ? (*tokens)->TokenFor(job_id) : "";
  }

  client::testing::FoakctlResult Foakctl(std::vector<std::string> args) {
    args.push_back("--server");
    args.push_back(address_);
    client::FoakctlOptions options = client::testing::FastTestOptions();
    options.retry_backoff = absl::Milliseconds(10);
    return client::testing::RunFoakctl(args, options);
  }

  testing::TempDir dir_{"foakd_security"};
  TestPki pki_, other_;
  TestClientCert client_, stranger_;
  std::unique_ptr<Foakd> foakd_;
  std::string address_;
};

void ExpectCode(const grpc::Status& status, grpc::StatusCode code, const std::string& text = "") {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  if (!text.empty()) {
    EXPECT_NE(status.error_message().find(text), std::string::npos) << status.error_message();
  }
}

TEST_F(FoakdSecurity, WithoutATokenOrWithAWrongOneEveryApiCallIsUnauthenticated) {
  FoakdOptions o = Options();
  o.auth_tokens_file = Path("tokens");
  Start(o);
  auto jobs = Jobs();
  foak::v1::ListJobsResponse list;
  ExpectCode(jobs->ListJobs(Context("").get(), {}, &list), grpc::StatusCode::UNAUTHENTICATED,
             "authorization: Bearer <token>");
  foak::v1::Job job;
  ExpectCode(Create(jobs.get(), "", &job), grpc::StatusCode::UNAUTHENTICATED);
  ExpectCode(Create(jobs.get(), "not-a-token-0123456789", &job), grpc::StatusCode::UNAUTHENTICATED,
             "not one of foakd's API tokens");
  foak::v1::GetJobRequest get;
  get.set_id("job-0000000000000000");
  ExpectCode(jobs->GetJob(Context("").get(), get, &job), grpc::StatusCode::UNAUTHENTICATED);
  auto context = Context("");
  context->AddMetadata("authorization", std::string("Basic ") + kAliceToken);
  grpc::Status basic = jobs->ListJobs(context.get(), {}, &list);
  ExpectCode(basic, grpc::StatusCode::UNAUTHENTICATED, "'Bearer <token>'");
  EXPECT_EQ(basic.error_message().find(kAliceToken), std::string::npos) << basic.error_message();
  foak::v1::File file;
  ExpectCode(Upload("", "{}\n", &file), grpc::StatusCode::UNAUTHENTICATED);
  foak::v1::ListFilesResponse files;
  ExpectCode(Files()->ListFiles(Context("wrong-0123456789abcdef").get(), {}, &files),
             grpc::StatusCode::UNAUTHENTICATED);
  // The raw token and the file's sha256 both let the tenants in.
  EXPECT_TRUE(jobs->ListJobs(Context(kAliceToken).get(), {}, &list).ok());
  EXPECT_TRUE(jobs->ListJobs(Context(kBobToken).get(), {}, &list).ok());
}

TEST_F(FoakdSecurity, ATenantSeesWatchesAndCancelsOnlyItsOwnJobs) {
  FoakdOptions o = Options();
  o.auth_tokens_file = Path("tokens");
  Start(o);
  auto jobs = Jobs();
  foak::v1::Job alice_job, bob_job;
  ASSERT_TRUE(Create(jobs.get(), kAliceToken, &alice_job, "", "same-request").ok());
  // The same request id from bob is bob's own new job, not alice's.
  ASSERT_TRUE(Create(jobs.get(), kBobToken, &bob_job, "", "same-request").ok());
  EXPECT_NE(alice_job.id(), bob_job.id());
  const std::string not_found = absl::StrCat("no job '", alice_job.id(), "'");

  foak::v1::Job job;
  foak::v1::GetJobRequest get;
  get.set_id(alice_job.id());
  ExpectCode(jobs->GetJob(Context(kBobToken).get(), get, &job), grpc::StatusCode::NOT_FOUND,
             not_found);
  foak::v1::CancelJobRequest cancel;
  cancel.set_id(alice_job.id());
  ExpectCode(jobs->CancelJob(Context(kBobToken).get(), cancel, &job), grpc::StatusCode::NOT_FOUND,
             not_found);
  foak::v1::WatchJobRequest watch;
  watch.set_id(alice_job.id());
  watch.set_history_only(true);
  auto watch_context = Context(kBobToken);
  auto reader = jobs->WatchJob(watch_context.get(), watch);
  foak::v1::JobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  ExpectCode(reader->Finish(), grpc::StatusCode::NOT_FOUND, not_found);
  foak::v1::ListCheckpointsRequest checkpoints;
  checkpoints.set_id(alice_job.id());
  foak::v1::ListCheckpointsResponse checkpoint_list;
  ExpectCode(jobs->ListCheckpoints(Context(kBobToken).get(), checkpoints, &checkpoint_list),
             grpc::StatusCode::NOT_FOUND, not_found);
  foak::v1::ListJobsResponse list;
  ASSERT_TRUE(jobs->ListJobs(Context(kBobToken).get(), {}, &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), bob_job.id());

  // Bob's cancel changed nothing; alice sees, watches and cancels her job.
  ASSERT_TRUE(jobs->GetJob(Context(kAliceToken).get(), get, &job).ok());
  EXPECT_NE(job.state(), foak::v1::Job::CANCELLING);
  EXPECT_NE(job.state(), foak::v1::Job::CANCELLED);
  auto alice_watch = Context(kAliceToken);
  reader = jobs->WatchJob(alice_watch.get(), watch);
  EXPECT_TRUE(reader->Read(&event));
  while (reader->Read(&event)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(jobs->CancelJob(Context(kAliceToken).get(), cancel, &job).ok());
  list.Clear();
  ASSERT_TRUE(jobs->ListJobs(Context(kAliceToken).get(), {}, &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), alice_job.id());
}

TEST_F(FoakdSecurity, ATenantUsesOnlyItsOwnUploadedFiles) {
  FoakdOptions o = Options();
  o.auth_tokens_file = Path("tokens");
  Start(o);
  const std::string data = R"({"messages": [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}]})"
                           "\n";
  foak::v1::File file;
  ASSERT_TRUE(Upload(kAliceToken, data, &file).ok());
  const std::string not_found = absl::StrCat("no uploaded file '", file.id(), "'");
  auto files = Files();
  foak::v1::GetFileRequest get;
  get.set_id(file.id());
  foak::v1::File got;
  ExpectCode(files->GetFile(Context(kBobToken).get(), get, &got), grpc::StatusCode::NOT_FOUND,
             not_found);
  foak::v1::DeleteFileRequest del;
  del.set_id(file.id());
  foak::v1::DeleteFileResponse deleted;
  ExpectCode(files->DeleteFile(Context(kBobToken).get(), del, &deleted),
             grpc::StatusCode::NOT_FOUND, not_found);
  foak::v1::ListFilesResponse list;
  ASSERT_TRUE(files->ListFiles(Context(kBobToken).get(), {}, &list).ok());
  EXPECT_EQ(list.files_size(), 0);
  // Naming alice's file in bob's job is as if it did not exist.
  auto jobs = Jobs();
  foak::v1::Job job;
  ExpectCode(Create(jobs.get(), kBobToken, &job, file.id()), grpc::StatusCode::INVALID_ARGUMENT,
             "no such uploaded file");
  EXPECT_TRUE(Create(jobs.get(), kAliceToken, &job, file.id()).ok());
  ASSERT_TRUE(files->GetFile(Context(kAliceToken).get(), get, &got).ok());
  ASSERT_TRUE(files->ListFiles(Context(kAliceToken).get(), {}, &list).ok());
  EXPECT_EQ(list.files_size(), 1);
}

TEST_F(FoakdSecurity, WorkerTokensAreUselessOnTheApiAndForOtherJobs) {
  FoakdOptions o = Options();
  o.auth_tokens_file = Path("tokens");
  Start(o);
  auto jobs = Jobs();
  foak::v1::Job first, second;
  ASSERT_TRUE(Create(jobs.get(), kAliceToken, &first).ok());
  ASSERT_TRUE(Create(jobs.get(), kAliceToken, &second).ok());
  const std::string first_token = WorkerToken(first.id());

  // The worker token of a job is no API token, not even for its own job.
  foak::v1::GetJobRequest get;
  get.set_id(first.id());
  foak::v1::Job job;
  ExpectCode(jobs->GetJob(Context(first_token).get(), get, &job),
             grpc::StatusCode::UNAUTHENTICATED, "a worker's job token is not an API token");
  foak::v1::ListFilesResponse files;
  ExpectCode(Files()->ListFiles(Context(first_token).get(), {}, &files),
             grpc::StatusCode::UNAUTHENTICATED);
  // Nor does it report for another job; an API token reports for none.
  ExpectCode(Report(second.id(), first_token), grpc::StatusCode::PERMISSION_DENIED,
             second.id());
  ExpectCode(Report(first.id(), kAliceToken), grpc::StatusCode::PERMISSION_DENIED);
  ExpectCode(Report(first.id(), ""), grpc::StatusCode::UNAUTHENTICATED);
  // Its own job's report goes through.
  EXPECT_TRUE(Report(first.id(), first_token).ok());
}

TEST_F(FoakdSecurity, FoakctlSendsItsTokenFromTheFlagTheFileOrTheEnvironment) {
  FoakdOptions o = Options();
  o.auth_tokens_file = Path("tokens");
  Start(o);
  auto jobs = Jobs();
  foak::v1::Job alice_job;
  ASSERT_TRUE(Create(jobs.get(), kAliceToken, &alice_job).ok());

  client::testing::FoakctlResult none = Foakctl({"list"});
  EXPECT_EQ(none.code, 1) << none.err;
  EXPECT_NE(none.err.find("--token"), std::string::npos) << none.err;

  client::testing::FoakctlResult alice = Foakctl({"list", "--token", kAliceToken});
  EXPECT_EQ(alice.code, 0) << alice.err;
  EXPECT_NE(alice.out.find(alice_job.id()), std::string::npos) << alice.out;

  Write("bob.token", absl::StrCat(kBobToken, "\n"));
  client::testing::FoakctlResult bob = Foakctl({"get", alice_job.id(), "--token-file", Path("bob.token")});
  EXPECT_EQ(bob.code, 3) << bob.err;  // not found: bob cannot see it
  client::testing::FoakctlResult bob_cancel =
      Foakctl({"cancel", alice_job.id(), "--token-file", Path("bob.token")});
  EXPECT_EQ(bob_cancel.code, 3) << bob_cancel.err;

  setenv("FOAK_TOKEN", kAliceToken, 1);
  client::testing::FoakctlResult from_env = Foakctl({"get", alice_job.id()});
  unsetenv("FOAK_TOKEN");
  EXPECT_EQ(from_env.code, 0) << from_env.err;

  client::testing::FoakctlResult empty_file =
      Foakctl({"list", "--token-file", Path("absent.token")});
  EXPECT_EQ(empty_file.code, 2) << empty_file.err;
  EXPECT_NE(empty_file.err.find("--token-file"), std::string::npos) << empty_file.err;
}

TEST_F(FoakdSecurity, TlsServesClientsThatTrustItsCaAndRefusesTheOthers) {
  Start(TlsOptions(/*mutual=*/false));
  foak::v1::ListJobsResponse list;
  EXPECT_TRUE(Jobs(Tls(pki_.ca_cert_pem))->ListJobs(Context("").get(), {}, &list).ok());
  ExpectCode(Jobs()->ListJobs(Context("").get(), {}, &list), grpc::StatusCode::UNAVAILABLE);
  ExpectCode(Jobs(Tls(other_.ca_cert_pem))->ListJobs(Context("").get(), {}, &list),
             grpc::StatusCode::UNAVAILABLE);

  client::testing::FoakctlResult ok = Foakctl({"list", "--tls-ca", Path("ca.pem")});
  EXPECT_EQ(ok.code, 0) << ok.err;
  client::testing::FoakctlResult wrong_ca = Foakctl({"list", "--tls-ca", Path("other-ca.pem")});
  EXPECT_EQ(wrong_ca.code, 6) << wrong_ca.err;
  EXPECT_NE(wrong_ca.err.find("--tls-ca"), std::string::npos) << wrong_ca.err;
  client::testing::FoakctlResult plaintext = Foakctl({"list"});
  EXPECT_EQ(plaintext.code, 6) << plaintext.err;
  EXPECT_NE(plaintext.err.find("--tls-ca"), std::string::npos) << plaintext.err;
  client::testing::FoakctlResult not_pem = Foakctl({"list", "--tls-ca", Path("tokens")});
  EXPECT_EQ(not_pem.code, 2) << not_pem.err;
  EXPECT_NE(not_pem.err.find("--tls-ca"), std::string::npos) << not_pem.err;
}

TEST_F(FoakdSecurity, MutualTlsNeedsAClientCertificateFromItsCa) {
  Start(TlsOptions(/*mutual=*/true));
  foak::v1::ListJobsResponse list;
  EXPECT_TRUE(
      Jobs(Tls(pki_.ca_cert_pem, &client_))->ListJobs(Context("").get(), {}, &list).ok());
  ExpectCode(Jobs(Tls(pki_.ca_cert_pem))->ListJobs(Context("").get(), {}, &list),
             grpc::StatusCode::UNAVAILABLE);
  ExpectCode(Jobs(Tls(pki_.ca_cert_pem, &stranger_))->ListJobs(Context("").get(), {}, &list),
             grpc::StatusCode::UNAVAILABLE);

  client::testing::FoakctlResult ok = Foakctl(
      {"list", "--tls-ca", Path("ca.pem"), "--tls-cert", Path("client.pem"), "--tls-key",
       Path("client.key")});
  EXPECT_EQ(ok.code, 0) << ok.err;
  client::testing::FoakctlResult no_cert = Foakctl({"list", "--tls-ca", Path("ca.pem")});
  EXPECT_EQ(no_cert.code, 6) << no_cert.err;
  client::testing::FoakctlResult half = Foakctl({"list", "--tls-cert", Path("client.pem")});
  EXPECT_EQ(half.code, 2) << half.err;
  EXPECT_NE(half.err.find("--tls-cert and --tls-key go together"), std::string::npos) << half.err;
}

TEST_F(FoakdSecurity, WorkersGetTheirTlsFilesAndReportOverMutualTls) {
  Start(TlsOptions(/*mutual=*/true));
  auto jobs = Jobs(Tls(pki_.ca_cert_pem, &client_));
  foak::v1::Job job;
  ASSERT_TRUE(Create(jobs.get(), "", &job).ok());
  const std::string env_file = JoinPath(JoinPath(JoinPath(Path("data"), "jobs"), job.id()),
                                        "worker-env.txt");
  std::string env;
  for (int i = 0; i < 100 && env.find("FOAK_COORDINATOR_TLS_KEY") == std::string::npos; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    env = ReadFileToString(env_file).value_or("");
  }
  EXPECT_NE(env.find(absl::StrCat("FOAK_COORDINATOR_TLS_CA=", Path("ca.pem"))), std::string::npos)
      << env;
  EXPECT_NE(env.find(absl::StrCat("FOAK_COORDINATOR_TLS_CERT=", Path("worker.pem"))),
            std::string::npos);
  EXPECT_NE(env.find(absl::StrCat("FOAK_COORDINATOR_TLS_KEY=", Path("worker.key"))),
            std::string::npos);

  auto State = [&] {
    foak::v1::GetJobRequest get;
    get.set_id(job.id());
    foak::v1::Job now;
    EXPECT_TRUE(jobs->GetJob(Context("").get(), get, &now).ok());
    return now.state();
  };
  CoordinatorReporter::Options options;
  options.address = address_;
  options.job_id = job.id();
  options.token = WorkerToken(job.id());
  options.tls_ca_pem = pki_.ca_cert_pem;
  options.log = nullptr;
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(100);
  {
    // Without a client certificate the handshake fails: nothing arrives.
    auto reporter = CoordinatorReporter::Create(options);
    ASSERT_TRUE(reporter.ok()) << reporter.status();
    (*reporter)->OnStart(2, 0, "cpu");
    EXPECT_FALSE((*reporter)->Close(absl::Milliseconds(700)).ok());
    EXPECT_EQ(State(), foak::v1::Job::STARTING);
  }
  options.tls_cert_pem = ReadFileToString(Path("worker.pem")).value();
  options.tls_key_pem = ReadFileToString(Path("worker.key")).value();
  auto reporter = CoordinatorReporter::Create(options);
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(2, 0, "cpu");
  EXPECT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());
  EXPECT_EQ(State(), foak::v1::Job::RUNNING);
}

// foakd's certificate names only foakd.example, as when workers dial foakd by
// an IP or a Service name the certificate does not carry: without
// --worker_tls_server_name a worker's handshake fails, and its reporter says
// why; with it, FOAK_COORDINATOR_TLS_SERVER_NAME reaches the worker and its
// reports arrive.
TEST_F(FoakdSecurity, WorkersCheckFoakdsCertificateAgainstTheServerNameOverride) {
  absl::StatusOr<TestPki> named = MakeTestPki("foak named CA", "foakd.example");
  ASSERT_TRUE(named.ok()) << named.status();
  Write("named-ca.pem", named->ca_cert_pem);
  Write("named.pem", named->server_cert_pem);
  Write("named.key", named->server_key_pem);
  FoakdOptions o = Options();
  o.tls.cert_file = Path("named.pem");
  o.tls.key_file = Path("named.key");
  o.tls.worker_ca_file = Path("named-ca.pem");
  o.tls.worker_server_name = "foakd.example";
  Start(o);
  // This test's own client needs the override too: it dials 127.0.0.1.
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("foakd.example");
  auto jobs = foak::v1::JobService::NewStub(
      grpc::CreateCustomChannel(address_, Tls(named->ca_cert_pem), args));
  foak::v1::Job job;
  ASSERT_TRUE(Create(jobs.get(), "", &job).ok());
  const std::string env_file = JoinPath(JoinPath(JoinPath(Path("data"), "jobs"), job.id()),
                                        "worker-env.txt");
  std::string env;
  for (int i = 0; i < 100 && env.find("FOAK_COORDINATOR_TLS_SERVER_NAME") == std::string::npos;
       ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    env = ReadFileToString(env_file).value_or("");
  }
  EXPECT_NE(env.find("FOAK_COORDINATOR_TLS_SERVER_NAME=foakd.example\n"), std::string::npos)
      << env;
  auto State = [&] {
    foak::v1::GetJobRequest get;
    get.set_id(job.id());
    foak::v1::Job now;
    EXPECT_TRUE(jobs->GetJob(Context("").get(), get, &now).ok());
    return now.state();
  };

  CoordinatorReporter::Options options;
  options.address = address_;
  options.job_id = job.id();
  options.token = WorkerToken(job.id());
  options.tls_ca_pem = named->ca_cert_pem;
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(100);
  {
    // No override: the certificate does not name 127.0.0.1, the handshake
    // fails, nothing arrives, and the reporter says what to set.
    std::FILE* log = std::tmpfile();
    ASSERT_NE(log, nullptr);
    options.log = log;
    auto reporter = CoordinatorReporter::Create(options);
    ASSERT_TRUE(reporter.ok()) << reporter.status();
    (*reporter)->OnStart(2, 0, "cpu");
    const absl::Status closed = (*reporter)->Close(absl::Milliseconds(700));
    EXPECT_EQ(closed.code(), absl::StatusCode::kDeadlineExceeded) << closed;
    EXPECT_NE(closed.message().find("last error: UNAVAILABLE: "), std::string::npos) << closed;
    EXPECT_NE(closed.message().find("set foakd --worker_tls_server_name "
                                    "(FOAK_COORDINATOR_TLS_SERVER_NAME)"),
              std::string::npos)
        << closed;
    EXPECT_EQ((*reporter)->stats().sent, 0);
    std::rewind(log);
    char line[4096] = {};
    EXPECT_NE(std::fgets(line, sizeof line, log), nullptr);
    std::fclose(log);
    EXPECT_NE(std::string(line).find("foak-worker: cannot report to foakd at " + address_),
              std::string::npos)
        << line;
    EXPECT_NE(std::string(line).find("--worker_tls_server_name"), std::string::npos) << line;
    EXPECT_EQ(State(), foak::v1::Job::STARTING);
  }
  // The worker's own way in: the environment foakd gave it.
  options.log = nullptr;
  options.tls_server_name = "foakd.example";
  auto reporter = CoordinatorReporter::Create(options);
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(2, 0, "cpu");
  const absl::Status closed = (*reporter)->Close(absl::Seconds(10));
  EXPECT_TRUE(closed.ok()) << closed;
  EXPECT_EQ((*reporter)->stats().sent, 1);
  EXPECT_EQ(State(), foak::v1::Job::RUNNING);
}

TEST_F(FoakdSecurity, StartupErrorsNameTheFlag) {
  struct Case {
    std::function<void(FoakdOptions*)> change;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[&](FoakdOptions* o) { o->tls.cert_file = Path("absent.pem"); },
       "--tls_cert = '" + Path("absent.pem") + "'"},
      {[&](FoakdOptions* o) { o->tls.cert_file = Path("tokens"); }, "no PEM certificate"},
      {[&](FoakdOptions* o) { o->tls.key_file = Path("other-server.key"); },
       "--tls_key = '" + Path("other-server.key") + "': this key does not belong"},
      {[&](FoakdOptions* o) { o->tls.key_file = ""; }, "--tls_key is required"},
      {[&](FoakdOptions* o) { o->tls.worker_ca_file = ""; }, "--worker_tls_ca is required"},
      {[&](FoakdOptions* o) { o->tls.client_ca_file = Path("ca.pem"); },
       "--worker_tls_cert is required"},
      {[&](FoakdOptions* o) { o->tls.client_ca_file = Path("absent-ca.pem"); },
       "--tls_client_ca = '"},
      {[&](FoakdOptions* o) {
         o->tls = FoakdTlsOptions();
         o->tls.client_ca_file = Path("ca.pem");
       },
       "--tls_client_ca needs --tls_cert"},
      {[&](FoakdOptions* o) { o->tls.worker_server_name = "foakd.example"; },
       "--worker_tls_server_name = 'foakd.example': the certificate of --tls_cert = '" +
           Path("server.pem") + "' does not name it"},
      {[&](FoakdOptions* o) { o->tls.worker_server_name = "foakd example"; },
       "--worker_tls_server_name = 'foakd example': expected a host name or an IP address"},
      {[&](FoakdOptions* o) {
         o->tls = FoakdTlsOptions();
         o->tls.worker_server_name = "127.0.0.1";
       },
       "--worker_tls_server_name apply only with --tls_cert"},
      {[&](FoakdOptions* o) { o->auth_tokens_file = Path("absent.tokens"); },
       "--auth_tokens_file: "},
      {[&](FoakdOptions* o) { o->auth_tokens_file = Path("ca.pem"); },
       "--auth_tokens_file: " + Path("ca.pem") + ":1:"},
      {[&](FoakdOptions* o) {
         o->metrics_address = "127.0.0.1:0";
         o->metrics_bearer_token_file = Path("absent.token");
       },
       "--metrics_bearer_token_file = '" + Path("absent.token") + "' cannot be read"},
  };
  for (const Case& c : cases) {
    FoakdOptions o = TlsOptions(/*mutual=*/false);
    c.change(&o);
    absl::StatusOr<std::unique_ptr<Foakd>> foakd = Foakd::Start(o);
    ASSERT_FALSE(foakd.ok()) << c.expected;
    EXPECT_NE(foakd.status().message().find(c.expected), std::string::npos)
        << "expected: " << c.expected << "\ngot: " << foakd.status().message();
  }
}

TEST_F(FoakdSecurity, TokensOverPlaintextOffLoopbackAreWarnedAboutAtStart) {
  FoakdOptions o = Options();
  o.auth_tokens_file = Path("tokens");
  for (const char* loopback : {"127.0.0.1:0", "localhost:7070", "[::1]:7070", "127.0.1.1:0"}) {
    o.listen_address = loopback;
    EXPECT_EQ(PlaintextTokensWarning(o), "") << loopback;
  }
  for (const char* open : {"0.0.0.0:7070", ":7070", "[::]:7070", "10.0.0.5:7070", "foakd:7070"}) {
    o.listen_address = open;
    EXPECT_NE(PlaintextTokensWarning(o).find(std::string("plaintext (no --tls_cert) on ") + open),
              std::string::npos)
        << open;
  }
  FoakdOptions tls = TlsOptions(/*mutual=*/false);
  tls.auth_tokens_file = Path("tokens");
  tls.listen_address = "0.0.0.0:7070";
  EXPECT_EQ(PlaintextTokensWarning(tls), "");  // encrypted
  o.auth_tokens_file = "";
  EXPECT_EQ(PlaintextTokensWarning(o), "");  // no tokens to leak

  // foakd itself says so on stderr, and starts.
  o = Options();
  o.auth_tokens_file = Path("tokens");
  o.listen_address = "0.0.0.0:0";
  ::testing::internal::CaptureStderr();
  Start(o);
  const std::string warned = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warned.find("foakd: WARNING: --auth_tokens_file is set but gRPC is plaintext"),
            std::string::npos)
      << warned;
  foakd_->Shutdown();
  foakd_.reset();
  o.listen_address = "127.0.0.1:0";
  ::testing::internal::CaptureStderr();
  Start(o);
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("WARNING"), std::string::npos);
}

TEST_F(FoakdSecurity, AWatchEndsUnauthenticatedOnceItsTokenIsRevoked) {
  FoakdOptions o = Options();
  o.auth_tokens_file = Path("tokens");
  Start(o);
  auto jobs = Jobs();
  foak::v1::Job alice_job, bob_job;
  ASSERT_TRUE(Create(jobs.get(), kAliceToken, &alice_job).ok());
  ASSERT_TRUE(Create(jobs.get(), kBobToken, &bob_job).ok());
  // Both watch their running job (the worker sleeps), reading its history.
  foak::v1::WatchJobRequest watch;
  watch.set_id(alice_job.id());
  auto alice_context = Context(kAliceToken);
  auto alice = jobs->WatchJob(alice_context.get(), watch);
  foak::v1::JobEvent event;
  ASSERT_TRUE(alice->Read(&event));
  watch.set_id(bob_job.id());
  auto bob_context = Context(kBobToken);
  bob_context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(4));
  auto bob = jobs->WatchJob(bob_context.get(), watch);
  ASSERT_TRUE(bob->Read(&event));

  // Alice's token leaves the file; bob's stays.
  Write("tokens", absl::StrCat("bob sha256:", Sha256Hex(kBobToken), "\n"));
  absl::StatusOr<size_t> reloaded = foakd_->ReloadAuthTokens();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  const auto revoked = std::chrono::steady_clock::now();
  while (alice->Read(&event)) {
  }
  ExpectCode(alice->Finish(), grpc::StatusCode::UNAUTHENTICATED, "no longer valid");
  EXPECT_LT(std::chrono::steady_clock::now() - revoked, std::chrono::seconds(3));
  // Bob's watch went on until its own deadline.
  while (bob->Read(&event)) {
  }
  EXPECT_EQ(bob->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

}  // namespace
}  // namespace foak
