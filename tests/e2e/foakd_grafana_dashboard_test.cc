// deploy/grafana/dashboards/foak.json against live data: the real Prometheus
// from Debian scrapes the real foakd while a CPU job trains, with
// deploy/prometheus/foak_alerts.yml loaded, and every query of every panel
// -- its template variables replaced as Grafana would for that one job --
// runs through Prometheus's /api/v1/query and must return samples (a
// misspelled metric or label returns none, bad PromQL an error). The
// dashboard's job variable and the rules' health are checked the same way.
// Grafana itself is not run (Debian has no package); what it adds on top is
// rendering. Skips without /usr/bin/prometheus (apt-get install prometheus).
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/foakd_process.h"
#include "tests/testing/prometheus_harness.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using ::foak::testing::PrometheusHarness;
using ::foak::testing::PrometheusSample;

const std::string kDashboard = std::string(FOAK_SOURCE_DIR) + "/deploy/grafana/dashboards/foak.json";
const std::string kRules = std::string(FOAK_SOURCE_DIR) + "/deploy/prometheus/foak_alerts.yml";

// One query of one panel.
struct PanelQuery {
  std::string panel;
  std::string ref_id;
  std::string expr;
};

// Every target of every panel, rows' nested panels included.
void CollectQueries(const Json& panels, std::vector<PanelQuery>* out, std::vector<std::string>* empty) {
  for (const Json& panel : panels) {
    const std::string title = panel.value("title", "?");
    if (panel.value("type", "") == "row") {
      if (panel.contains("panels")) CollectQueries(panel["panels"], out, empty);
      continue;
    }
    size_t n = 0;
    for (const Json& target : panel.value("targets", Json::array())) {
      const std::string expr = target.value("expr", "");
      if (expr.empty()) continue;
      out->push_back({title, target.value("refId", "?"), expr});
      ++n;
    }
    if (n == 0) empty->push_back(title);
  }
}

// The expression as Grafana sends it for one selected job: `job_id` is the
// job's id (a regex of itself: ids are letters, digits and '-'), the rate
// and plain intervals a concrete 30 s (several 1 s scrapes).
std::string Substitute(const std::string& expr, const std::string& job_id) {
  return absl::StrReplaceAll(expr, {{"${job_id}", job_id},
                                    {"$job_id", job_id},
                                    {"${__rate_interval}", "30s"},
                                    {"$__rate_interval", "30s"},
                                    {"${__interval}", "30s"},
                                    {"$__interval", "30s"}});
}

TEST(FoakdGrafanaDashboard, EveryPanelQueryReturnsDataForARunningJob) {
  if (!PrometheusHarness::Available()) GTEST_SKIP() << "no prometheus; apt-get install prometheus";

  // The dashboard's shape: the stable uid Grafana links by, the job
  // variable, and a query on every panel.
  absl::StatusOr<std::string> text = ReadFileToString(kDashboard);
  ASSERT_TRUE(text.ok()) << text.status();
  const Json dashboard = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(dashboard.is_discarded()) << kDashboard << " is not JSON";
  EXPECT_EQ(dashboard.value("uid", ""), "foak-training");
  std::string job_variable_query;
  for (const Json& v : dashboard["templating"]["list"]) {
    if (v.value("name", "") != "job_id") continue;
    const Json& query = v["query"];  // an object in Grafana 10+, a string before
    job_variable_query = query.is_object() ? query.value("query", "") : query.get<std::string>();
  }
  ASSERT_FALSE(job_variable_query.empty()) << "no job_id template variable";
  std::vector<PanelQuery> queries;
  std::vector<std::string> without_query;
  CollectQueries(dashboard["panels"], &queries, &without_query);
  EXPECT_TRUE(without_query.empty()) << "panels without a query: " << absl::StrJoin(without_query, ", ");
  ASSERT_GE(queries.size(), 7u);

  testing::TempDir dir("foakd_grafana");
  const std::string model = JoinPath(dir.path(), "model");
  testing::WorkerResult init = testing::RunWorkerCapture(
      "init-model --config " + std::string(FOAK_SOURCE_DIR) +
      "/examples/debug_model/config.json --out " + model + " --seed 1");
  ASSERT_EQ(init.exit_code, 0) << init.err;
  testing::FoakdProcess foakd(JoinPath(dir.path(), "data"));
  ASSERT_TRUE(foakd.Start());

  testing::PrometheusHarnessOptions options;
  options.targets = {"127.0.0.1:" + std::to_string(foakd.metrics_port())};
  options.rule_files = {kRules};
  absl::StatusOr<std::unique_ptr<PrometheusHarness>> started = PrometheusHarness::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  const PrometheusHarness& prom = **started;
  ASSERT_TRUE(prom.WaitForTargetUp(30000).ok()) << prom.Log();

  // A CPU job that logs every 2 steps and runs until cancelled.
  Json spec = {{"name", "dashboard"},
               {"model", model},
               {"dataset",
                {{"train", std::string(FOAK_SOURCE_DIR) + "/examples/data/arith_train.jsonl"},
                 {"format", "chat"}}},
               {"hyperparameters",
                {{"max_steps", 100000}, {"batch_size", 2}, {"max_seq_len", 64},
                 {"logging_steps", 2}, {"precision", "fp32"}}}};
  grpc::ClientContext ctx;
  foak::v1::CreateJobRequest req;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(spec.dump(), req.mutable_spec()).ok());
  foak::v1::Job job;
  ASSERT_TRUE(foakd.jobs().CreateJob(&ctx, req, &job).ok());
  const std::string id = job.id();
  absl::StatusOr<double> step = prom.WaitForValue("foak_job_step{job_id=\"" + id + "\"}",
                                                  [](double v) { return v > 0; }, 60000);
  ASSERT_TRUE(step.ok()) << step.status() << "\n" << foakd.Log();

  // The job variable lists the job: label_values(METRIC, LABEL) is Grafana's
  // shorthand for the LABEL values of METRIC's series.
  ASSERT_EQ(job_variable_query.rfind("label_values(", 0), 0u) << job_variable_query;
  const std::string args = job_variable_query.substr(13, job_variable_query.size() - 14);
  const size_t comma = args.rfind(',');
  ASSERT_NE(comma, std::string::npos) << job_variable_query;
  const std::string metric = args.substr(0, comma);
  const std::string label = std::string(absl::StripAsciiWhitespace(args.substr(comma + 1)));
  absl::StatusOr<std::vector<PrometheusSample>> values =
      prom.QueryVector(absl::StrCat("count by (", label, ") (", metric, ")"));
  ASSERT_TRUE(values.ok()) << values.status();
  std::set<std::string> listed;
  for (const PrometheusSample& s : *values) listed.insert(s.labels.count(label) ? s.labels.at(label) : "");
  EXPECT_TRUE(listed.count(id)) << job_variable_query << " does not list " << id;

  // Every panel query, until each has returned samples (rate() windows and
  // the first step-time report need a few scrapes) or the deadline passes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(45);
  std::vector<std::string> failures;
  for (const PanelQuery& q : queries) {
    const std::string expr = Substitute(q.expr, id);
    ASSERT_EQ(expr.find('$'), std::string::npos)
        << "panel '" << q.panel << "' " << q.ref_id << " uses a variable the test does not know: " << q.expr;
    std::string last;
    bool ok = false;
    while (true) {
      absl::StatusOr<std::vector<PrometheusSample>> samples = prom.QueryVector(expr);
      if (!samples.ok()) {
        last = samples.status().ToString();
        if (samples.status().code() == absl::StatusCode::kInvalidArgument &&
            last.find("bad_data") != std::string::npos) {
          break;  // bad PromQL: waiting will not fix it
        }
      } else if (!samples->empty()) {
        ok = true;
        // A query filtered by the variable shows that job and no other.
        if (q.expr.find("job_id") != std::string::npos) {
          for (const PrometheusSample& s : *samples) {
            if (s.labels.count("job_id")) {
              EXPECT_EQ(s.labels.at("job_id"), id) << q.panel << ": " << expr;
            }
          }
        }
        break;
      } else {
        last = "no samples";
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    if (!ok) failures.push_back(absl::StrCat("panel '", q.panel, "' ", q.ref_id, ": ", expr, " -> ", last));
  }
  EXPECT_TRUE(failures.empty()) << absl::StrJoin(failures, "\n") << "\nfoakd log:\n" << foakd.Log();

  // The alert rules loaded and evaluate without errors against foakd's
  // series (health "ok" once evaluated; "unknown" before the first round).
  std::string rule_problems = "no answer";
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<Json> rules = prom.Get("/api/v1/rules");
    if (!rules.ok()) {
      rule_problems = rules.status().ToString();
    } else {
      std::vector<std::string> problems;
      size_t n = 0;
      for (const Json& group : (*rules)["data"]["groups"]) {
        for (const Json& rule : group["rules"]) {
          ++n;
          if (rule.value("health", "") != "ok") {
            problems.push_back(absl::StrCat(rule.value("name", "?"), ": ", rule.value("health", "?"), " ",
                                            rule.value("lastError", "")));
          }
        }
      }
      if (n == 0) problems.push_back("no rules loaded");
      rule_problems = absl::StrJoin(problems, "; ");
      if (problems.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(rule_problems, "") << prom.Log();
  // A healthy job trips none of them.
  absl::StatusOr<std::vector<PrometheusSample>> firing = prom.QueryVector("ALERTS");
  ASSERT_TRUE(firing.ok()) << firing.status();
  EXPECT_TRUE(firing->empty()) << firing->front().labels.at("alertname");

  grpc::ClientContext cctx;
  foak::v1::CancelJobRequest cancel;
  cancel.set_id(id);
  foak::v1::Job after;
  EXPECT_TRUE(foakd.jobs().CancelJob(&cctx, cancel, &after).ok());
}

}  // namespace
}  // namespace foak
