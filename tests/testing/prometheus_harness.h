// Runs a real Prometheus server (Debian: package `prometheus`,
// /usr/bin/prometheus) for tests that must prove that what foak exports is
// scraped and queryable, not merely that it looks right to our own parser.
//
//   PrometheusHarnessOptions options;
//   options.targets = {"127.0.0.1:" + std::to_string(metrics_port)};
//   ASSERT_OK_AND_ASSIGN(auto prometheus, PrometheusHarness::Start(options));
//   ASSERT_TRUE(prometheus->WaitForTargetUp(20000).ok());
//   absl::StatusOr<double> step = prometheus->QueryValue("foak_job_step{job_id=\"j1\"}");
//
// What it does: makes a private temp folder (config, TSDB, log), picks a free
// port for Prometheus's web API by binding port 0, writes a config that
// scrapes every target's /metrics every `scrape_interval_s` (1 s by default),
// starts the binary and waits until GET /-/ready answers 200. The destructor
// sends SIGTERM, waits up to 10 s, then SIGKILL, reaps the process and
// removes the folder (kept when FOAK_KEEP_PROMETHEUS_DIR is set, for
// debugging; Log() returns Prometheus's own log for failure messages).
//
// Why these choices: the free port is found by binding 0 and closing, which
// can race with another process, so Start retries a few ports when
// Prometheus reports "address already in use". The child gets
// PR_SET_PDEATHSIG(SIGKILL) so a crashed or killed test binary never leaves
// a Prometheus behind. Between fork and exec only async-signal-safe calls are
// made (the test process has threads: civetweb, gRPC). Queries go through
// Prometheus's HTTP API with the plain socket client of http_get.h.
//
// Remember the timing when asserting: a value set in the process under test
// is visible to queries only after the next scrape (up to one interval) plus
// ingestion, so poll with WaitForValue instead of sleeping.
#ifndef FOAK_TESTS_TESTING_PROMETHEUS_HARNESS_H_
#define FOAK_TESTS_TESTING_PROMETHEUS_HARNESS_H_

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "tests/testing/http_get.h"

namespace foak::testing {

inline constexpr char kDefaultPrometheusBinary[] = "/usr/bin/prometheus";

struct PrometheusHarnessOptions {
  std::vector<std::string> targets;  // "127.0.0.1:9464"; each is scraped at metrics_path
  std::string metrics_path = "/metrics";
  std::string job_name = "foak";           // the `job` label of the scraped series
  int scrape_interval_s = 1;               // also the scrape timeout
  std::string binary = kDefaultPrometheusBinary;
  int ready_timeout_ms = 30000;            // until GET /-/ready is 200
  // Rule files to load (absolute paths), evaluated every scrape_interval_s;
  // Get("/api/v1/rules") shows their health.
  std::vector<std::string> rule_files;
  // A file holding the bearer token Prometheus sends on every scrape
  // (scrape_config authorization.credentials_file); empty = none.
  std::string credentials_file;
};

// One sample of an instant vector: its labels (with __name__) and value.
struct PrometheusSample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

class PrometheusHarness {
 public:
  // Whether `binary` exists and is executable; tests GTEST_SKIP otherwise.
  static bool Available(const std::string& binary = kDefaultPrometheusBinary) {
    return access(binary.c_str(), X_OK) == 0;
  }

  // Starts Prometheus and waits until it is ready. FAILED_PRECONDITION when
  // the binary is missing; UNAVAILABLE with Prometheus's log when it exits or
  // is not ready in time.
  static absl::StatusOr<std::unique_ptr<PrometheusHarness>> Start(PrometheusHarnessOptions options) {
    if (!Available(options.binary)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no Prometheus at ", options.binary, "; on Debian: apt-get install prometheus"));
    }
    if (options.targets.empty()) return absl::InvalidArgumentError("PrometheusHarness needs a target");
    const char* tmp = std::getenv("TMPDIR");
    std::string dir_template = JoinPath(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp",
                                        "foak-prometheus-XXXXXX");
    if (mkdtemp(dir_template.data()) == nullptr) {
      return ErrnoStatus("cannot make a temp folder like", dir_template, errno);
    }
    std::unique_ptr<PrometheusHarness> harness(new PrometheusHarness(std::move(options), dir_template));
    absl::Status last;
    for (int attempt = 0; attempt < 3; ++attempt) {
      last = harness->Launch();
      if (last.ok()) return harness;
      if (harness->Log().find("address already in use") == std::string::npos) break;
    }
    return last;
  }

  ~PrometheusHarness() {
    Stop();
    if (std::getenv("FOAK_KEEP_PROMETHEUS_DIR") == nullptr) RemoveTree(dir_).IgnoreError();
  }

  PrometheusHarness(const PrometheusHarness&) = delete;
  PrometheusHarness& operator=(const PrometheusHarness&) = delete;

  // GET /api/v1/query?query=<promql>: the whole JSON answer, e.g.
  // {"status":"success","data":{"resultType":"vector","result":[...]}}.
  // An HTTP error or a status other than "success" is an error carrying the
  // body (Prometheus explains bad PromQL there).
  absl::StatusOr<nlohmann::json> Query(const std::string& promql) const {
    return GetJson(absl::StrCat("/api/v1/query?query=", UrlEncode(promql)));
  }

  // GET of any API path ("/api/v1/rules"): the whole JSON answer, with the
  // same error handling as Query.
  absl::StatusOr<nlohmann::json> Get(const std::string& path) const { return GetJson(path); }

  // The samples of an instant-vector query.
  absl::StatusOr<std::vector<PrometheusSample>> QueryVector(const std::string& promql) const {
    absl::StatusOr<nlohmann::json> answer = Query(promql);
    if (!answer.ok()) return answer.status();
    const nlohmann::json& data = answer->at("data");
    if (data.value("resultType", "") != "vector") {
      return absl::InvalidArgumentError(
          absl::StrCat("query '", promql, "' is not an instant vector: ", answer->dump()));
    }
    std::vector<PrometheusSample> samples;
    for (const nlohmann::json& r : data.at("result")) {
      PrometheusSample sample;
      for (const auto& [key, value] : r.at("metric").items()) sample.labels[key] = value.get<std::string>();
      // "value": [<unix time>, "<number as text>"]; text covers NaN and +Inf.
      sample.value = std::strtod(r.at("value").at(1).get<std::string>().c_str(), nullptr);
      samples.push_back(std::move(sample));
    }
    return samples;
  }

  // The value of a query that yields exactly one sample. NOT_FOUND when it
  // yields none (not scraped yet, or the series is gone).
  absl::StatusOr<double> QueryValue(const std::string& promql) const {
    absl::StatusOr<std::vector<PrometheusSample>> samples = QueryVector(promql);
    if (!samples.ok()) return samples.status();
    if (samples->empty()) return absl::NotFoundError(absl::StrCat("query '", promql, "' has no samples"));
    if (samples->size() > 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("query '", promql, "' has ", samples->size(), " samples; expected one"));
    }
    return samples->front().value;
  }

  // Polls QueryValue every 200 ms until `done(value)` holds; returns that
  // value. DEADLINE_EXCEEDED names the query and the last value or error.
  absl::StatusOr<double> WaitForValue(const std::string& promql, const std::function<bool(double)>& done,
                                      int timeout_ms) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::string last = "no answer";
    while (true) {
      absl::StatusOr<double> value = QueryValue(promql);
      if (value.ok() && done(*value)) return *value;
      last = value.ok() ? absl::StrCat("last value ", *value) : value.status().ToString();
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("query '", promql, "' did not reach the expected value in ", timeout_ms, " ms; ", last));
  }

  // Waits until Prometheus has scraped every target successfully (health "up"
  // in /api/v1/targets). DEADLINE_EXCEEDED carries the targets' last errors.
  absl::Status WaitForTargetUp(int timeout_ms) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::string last = "no answer";
    while (true) {
      absl::StatusOr<nlohmann::json> answer = GetJson("/api/v1/targets");
      if (answer.ok()) {
        const nlohmann::json& active = (*answer)["data"]["activeTargets"];
        size_t up = 0;
        std::vector<std::string> problems;
        for (const nlohmann::json& t : active) {
          if (t.value("health", "") == "up") {
            ++up;
          } else {
            problems.push_back(absl::StrCat(t.value("scrapeUrl", "?"), ": ", t.value("health", "?"), " ",
                                            t.value("lastError", "")));
          }
        }
        if (up >= options_.targets.size() && problems.empty()) return absl::OkStatus();
        last = absl::StrCat(up, " of ", options_.targets.size(), " targets up; ", absl::StrJoin(problems, "; "));
      } else {
        last = answer.status().ToString();
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("Prometheus targets not up within ", timeout_ms, " ms: ", last));
  }

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // Prometheus's own log (stdout and stderr), for failure messages.
  std::string Log() const { return ReadFileToString(LogPath()).value_or(""); }

 private:
  PrometheusHarness(PrometheusHarnessOptions options, std::string dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}

  std::string LogPath() const { return JoinPath(dir_, "prometheus.log"); }

  static std::string UrlEncode(const std::string& text) {
    static const char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.' || c == '~') {
        out += static_cast<char>(c);
      } else {
        out += '%';
        out += kHex[c >> 4];
        out += kHex[c & 15];
      }
    }
    return out;
  }

  // A port that was free a moment ago (bind 0, read it, close).
  static absl::StatusOr<int> PickFreePort() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return ErrnoStatus("socket for", "a free port", errno);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const int err = errno;
      close(fd);
      return ErrnoStatus("bind", "127.0.0.1:0", err);
    }
    close(fd);
    return static_cast<int>(ntohs(addr.sin_port));
  }

  absl::StatusOr<nlohmann::json> GetJson(const std::string& path) const {
    absl::StatusOr<HttpResponse> response = HttpGet("127.0.0.1", port_, path);
    if (!response.ok()) return response.status();
    nlohmann::json body = nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (response->status_code != 200 || body.is_discarded() || body.value("status", "") != "success") {
      return absl::InvalidArgumentError(absl::StrCat("Prometheus GET ", path, " -> HTTP ",
                                                     response->status_code, ": ", response->body));
    }
    return body;
  }

  std::string ConfigYaml() const {
    std::vector<std::string> quoted;
    for (const std::string& t : options_.targets) quoted.push_back(absl::StrCat("'", t, "'"));
    const std::string interval = absl::StrCat(options_.scrape_interval_s, "s");
    std::string rules;
    if (!options_.rule_files.empty()) {
      rules = "rule_files:\n";
      for (const std::string& f : options_.rule_files) absl::StrAppend(&rules, "  - '", f, "'\n");
    }
    return absl::StrCat("global:\n  scrape_interval: ", interval, "\n  scrape_timeout: ", interval,
                        "\n  evaluation_interval: ", interval, "\n", rules,
                        "scrape_configs:\n  - job_name: '", options_.job_name, "'\n    metrics_path: '",
                        options_.metrics_path, "'\n",
                        options_.credentials_file.empty()
                            ? std::string()
                            : absl::StrCat("    authorization:\n      type: Bearer\n      credentials_file: '",
                                           options_.credentials_file, "'\n"),
                        "    static_configs:\n      - targets: [", absl::StrJoin(quoted, ", "), "]\n");
  }

  // One attempt: a fresh port, config and TSDB; fork+exec; wait for /-/ready.
  absl::Status Launch() {
    Stop();
    absl::StatusOr<int> port = PickFreePort();
    if (!port.ok()) return port.status();
    port_ = *port;
    const std::string config = JoinPath(dir_, "prometheus.yml");
    RETURN_IF_ERROR(WriteFileAtomically(config, ConfigYaml()));
    const std::string data = JoinPath(dir_, absl::StrCat("data-", port_));
    std::vector<std::string> args = {options_.binary,
                                     "--config.file=" + config,
                                     "--storage.tsdb.path=" + data,
                                     absl::StrCat("--web.listen-address=127.0.0.1:", port_),
                                     "--log.level=info"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = LogPath();
    const pid_t parent = getpid();

    pid_ = fork();
    if (pid_ < 0) return ErrnoStatus("fork for", options_.binary, errno);
    if (pid_ == 0) {
      // Child: async-signal-safe calls only.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);  // the parent died before prctl
      const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      const int in = open("/dev/null", O_RDONLY);
      if (out >= 0) {
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
      }
      if (in >= 0) dup2(in, STDIN_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.ready_timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return absl::UnavailableError(absl::StrCat("prometheus exited at start (wait status ", status,
                                                   "); its log:\n", Log()));
      }
      absl::StatusOr<HttpResponse> ready = HttpGet("127.0.0.1", port_, "/-/ready", 2000);
      if (ready.ok() && ready->status_code == 200) return absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Stop();
    return absl::UnavailableError(absl::StrCat("prometheus on port ", port_, " not ready within ",
                                               options_.ready_timeout_ms, " ms; its log:\n", Log()));
  }

  // SIGTERM, up to 10 s for a clean shutdown, then SIGKILL; always reaps.
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  const PrometheusHarnessOptions options_;
  const std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_PROMETHEUS_HARNESS_H_
