// foakctl's pure pieces: text formats, YAML scalar typing, flag parsing,
// SHA-256, local paths, the ETA, the exit-code mapping and a data-parallel
// job's `get` view.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "client/errors.h"
#include "client/flag_set.h"
#include "client/format.h"
#include "client/job_spec_flags.h"
#include "client/job_view.h"
#include "client/progress_line.h"
#include "common/sha256.h"
#include "client/yaml_to_json.h"
#include "gtest/gtest.h"

namespace foak::client {
namespace {

TEST(FoakctlFormat, AgeUsesOneUnitLikeKubectl) {
  EXPECT_EQ(FormatAge(absl::Seconds(5)), "5s");
  EXPECT_EQ(FormatAge(absl::Seconds(59)), "59s");
  EXPECT_EQ(FormatAge(absl::Minutes(3) + absl::Seconds(59)), "3m");
  EXPECT_EQ(FormatAge(absl::Hours(2) + absl::Minutes(30)), "2h");
  EXPECT_EQ(FormatAge(absl::Hours(24 * 4 + 5)), "4d");
  EXPECT_EQ(FormatAge(absl::Seconds(-3)), "0s");
}

TEST(FoakctlFormat, EtaUsesTwoUnits) {
  EXPECT_EQ(FormatEta(absl::Seconds(45)), "45s");
  EXPECT_EQ(FormatEta(absl::Seconds(72)), "1m12s");
  EXPECT_EQ(FormatEta(absl::Hours(2) + absl::Minutes(3)), "2h03m");
  EXPECT_EQ(FormatEta(absl::Hours(24 * 3 + 4)), "3d04h");
}

TEST(FoakctlFormat, BytesAndThousands) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(int64_t{1288490189}), "1.2 GiB");
  EXPECT_EQ(FormatThousands(0), "0");
  EXPECT_EQ(FormatThousands(999), "999");
  EXPECT_EQ(FormatThousands(1234), "1,234");
  EXPECT_EQ(FormatThousands(1234567), "1,234,567");
  EXPECT_EQ(FormatThousands(-1234), "-1,234");
  EXPECT_EQ(FormatThousands(std::numeric_limits<int64_t>::min()), "-9,223,372,036,854,775,808");
}

TEST(FoakctlFormat, StateNames) {
  EXPECT_EQ(*ParseStateName("running"), foak::v1::Job::RUNNING);
  EXPECT_EQ(*ParseStateName("CANCELLED"), foak::v1::Job::CANCELLED);
  const absl::StatusOr<foak::v1::Job::State> bad = ParseStateName("asleep");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("QUEUED"), absl::string_view::npos);
  EXPECT_EQ(StateName(foak::v1::Job::STATE_UNSPECIFIED), "UNKNOWN");
}

TEST(FoakctlYaml, ScalarsKeepTheirTypes) {
  const absl::StatusOr<nlohmann::json> j = YamlToJson(
      "int: 12\nneg: -4\nhex: 0x10\nquoted: '12'\nfloat: 1e-4\nhalf: .5\nbool: true\n"
      "null1: ~\nnull2:\nyes: yes\ninf: .inf\nnan: .nan\nlist: [1, two, 'three']\n"
      "block: |\n  line\nnested: {a: {b: false}}\nbig: 18446744073709551615\n");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["int"], 12);
  EXPECT_EQ((*j)["neg"], -4);
  EXPECT_EQ((*j)["hex"], 16);
  EXPECT_EQ((*j)["quoted"], "12");
  EXPECT_DOUBLE_EQ((*j)["float"].get<double>(), 1e-4);
  EXPECT_DOUBLE_EQ((*j)["half"].get<double>(), 0.5);
  EXPECT_EQ((*j)["bool"], true);
  EXPECT_TRUE((*j)["null1"].is_null());
  EXPECT_TRUE((*j)["null2"].is_null());
  EXPECT_EQ((*j)["yes"], "yes");  // YAML 1.2: not a boolean
  EXPECT_EQ((*j)["inf"], "Infinity");
  EXPECT_EQ((*j)["nan"], "NaN");
  EXPECT_EQ((*j)["list"], nlohmann::json::parse(R"([1, "two", "three"])"));
  EXPECT_EQ((*j)["block"], "line\n");
  EXPECT_EQ((*j)["nested"]["a"]["b"], false);
  EXPECT_EQ((*j)["big"].get<uint64_t>(), 18446744073709551615ull);
}

TEST(FoakctlYaml, ErrorsNameTheLineOrKey) {
  const absl::StatusOr<nlohmann::json> dup = YamlToJson("a:\n  b: 1\n  b: 2\n");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("'a.b' is given twice"), absl::string_view::npos)
      << dup.status();
  const absl::StatusOr<nlohmann::json> syntax = YamlToJson("a: [1, 2\n");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(syntax.status().message().find("line "), absl::string_view::npos) << syntax.status();
  EXPECT_EQ(ExitCodeFor(syntax.status()), kExitUsage);
}

TEST(FoakctlFlags, ParsesEveryForm) {
  FlagSet flags("t", "");
  flags.AddValue("file", 'f', "FILE", "");
  flags.AddValue("output", 'o', "FORMAT", "");
  flags.AddBool("watch", 'w', "");
  flags.AddRepeated("label", 0, "K=V", "");
  ASSERT_TRUE(flags.Parse({"pos1", "-f", "a.yaml", "--output=json", "--label", "a=1", "--label=b=2",
                           "-w", "--", "--not-a-flag"})
                  .ok());
  EXPECT_EQ(flags.Get("file"), "a.yaml");
  EXPECT_EQ(flags.Get("output"), "json");
  EXPECT_TRUE(flags.GetBool("watch"));
  EXPECT_EQ(flags.GetAll("label"), (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_EQ(flags.positional(), (std::vector<std::string>{"pos1", "--not-a-flag"}));
  EXPECT_FALSE(flags.help_requested());

  FlagSet attached("t", "");
  attached.AddValue("output", 'o', "FORMAT", "");
  ASSERT_TRUE(attached.Parse({"-ojson", "-h"}).ok());
  EXPECT_EQ(attached.Get("output"), "json");
  EXPECT_TRUE(attached.help_requested());
}

TEST(FoakctlFlags, BadFlagsAreUsageErrors) {
  FlagSet flags("t", "");
  flags.AddValue("limit", 0, "N", "");
  flags.AddBool("watch", 0, "");
  EXPECT_EQ(ExitCodeFor(flags.Parse({"--nope"})), kExitUsage);
  FlagSet missing("t", "");
  missing.AddValue("limit", 0, "N", "");
  const absl::Status s = missing.Parse({"--limit"});
  EXPECT_EQ(ExitCodeFor(s), kExitUsage);
  EXPECT_NE(s.message().find("--limit needs a value (N)"), absl::string_view::npos) << s;
  FlagSet typed("t", "");
  typed.AddValue("limit", 0, "N", "");
  ASSERT_TRUE(typed.Parse({"--limit", "x"}).ok());
  EXPECT_EQ(ExitCodeFor(typed.GetInt("limit", 0).status()), kExitUsage);
}

TEST(FoakctlFlags, IntListsAreCommaSeparatedWithAMinimum) {
  FlagSet flags("t", "");
  flags.AddValue("batch", 0, "N,N", "");
  flags.AddValue("seq", 0, "N,N", "");
  ASSERT_TRUE(flags.Parse({"--batch", "4,16"}).ok());
  EXPECT_EQ(flags.GetIntList("batch", 1).value(), (std::vector<int64_t>{4, 16}));
  EXPECT_TRUE(flags.GetIntList("seq", 2).value().empty()) << "not given";
  for (const char* bad : {"4,", "4,,16", "x", "0", "4;16", ""}) {
    FlagSet f("t", "");
    f.AddValue("batch", 0, "N,N", "");
    ASSERT_TRUE(f.Parse({"--batch", bad}).ok());
    const absl::Status s = f.GetIntList("batch", 1).status();
    EXPECT_EQ(ExitCodeFor(s), kExitUsage) << bad;
    EXPECT_NE(s.message().find("--batch: '"), absl::string_view::npos) << s;
    EXPECT_NE(s.message().find("integers >= 1"), absl::string_view::npos) << s;
  }
}

TEST(FoakctlFlags, SharedSpecFlagsForLoraAndPrecision) {
  FlagSet flags("t", "");
  AddJobSpecFlags(&flags);
  ASSERT_TRUE(flags.Parse({"--lora-dropout", "0.1", "--lora-target-modules", "all-linear",
                           "--precision", "bf16"})
                  .ok());
  foak::v1::JobSpec spec;
  ASSERT_TRUE(ApplyJobSpecFlags(flags, &spec).ok());
  EXPECT_EQ(spec.method(), "lora") << "implied";
  EXPECT_DOUBLE_EQ(spec.lora().dropout(), 0.1);
  EXPECT_EQ(spec.lora().target_modules().string_value(), "all-linear");
  EXPECT_EQ(spec.hyperparameters().precision(), "bf16");

  // A LoRA flag with method full (from a flag or the job file) is a usage error.
  foak::v1::JobSpec full;
  full.set_method("full");
  FlagSet lora("t", "");
  AddJobSpecFlags(&lora);
  ASSERT_TRUE(lora.Parse({"--lora-alpha", "16"}).ok());
  absl::Status s = ApplyJobSpecFlags(lora, &full);
  EXPECT_EQ(ExitCodeFor(s), kExitUsage);
  EXPECT_NE(s.message().find("--lora-alpha: LoRA settings need --method lora"),
            absl::string_view::npos)
      << s;
  FlagSet precision("t", "");
  AddJobSpecFlags(&precision);
  ASSERT_TRUE(precision.Parse({"--precision", "fp16"}).ok());
  s = ApplyJobSpecFlags(precision, &spec);
  EXPECT_NE(
      s.message().find("--precision: 'fp16' is not a precision; use bf16-mixed, bf16 or fp32"),
      absl::string_view::npos)
      << s;
}

TEST(FoakctlFlags, QloraMethodAndDoubleQuant) {
  // --double-quant implies qlora; LoRA flags are welcome with qlora.
  FlagSet flags("t", "");
  AddJobSpecFlags(&flags);
  ASSERT_TRUE(flags.Parse({"--double-quant", "TRUE", "--lora-r", "4"}).ok());
  foak::v1::JobSpec spec;
  ASSERT_TRUE(ApplyJobSpecFlags(flags, &spec).ok());
  EXPECT_EQ(spec.method(), "qlora") << "implied";
  EXPECT_TRUE(spec.quantization().double_quant());
  EXPECT_EQ(spec.lora().r(), 4);
  EXPECT_NE(flags.Help().find("--method full|lora|qlora"), std::string::npos);
  EXPECT_NE(flags.Help().find("--double-quant true|false"), std::string::npos);

  // With another method, or a value that is not a boolean, a usage error.
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--method", "lora", "--double-quant", "false"},
           {"--method", "full", "--double-quant", "true"},
           {"--double-quant", "yes"}}) {
    FlagSet f("t", "");
    AddJobSpecFlags(&f);
    ASSERT_TRUE(f.Parse(args).ok());
    foak::v1::JobSpec s;
    const absl::Status st = ApplyJobSpecFlags(f, &s);
    EXPECT_EQ(ExitCodeFor(st), kExitUsage) << args[1];
    EXPECT_NE(st.message().find("--double-quant: "), absl::string_view::npos) << st;
  }
  FlagSet method("t", "");
  AddJobSpecFlags(&method);
  ASSERT_TRUE(method.Parse({"--method", "QLoRA"}).ok());
  foak::v1::JobSpec q;
  ASSERT_TRUE(ApplyJobSpecFlags(method, &q).ok());
  EXPECT_EQ(q.method(), "qlora");
  EXPECT_FALSE(q.has_quantization()) << "the worker's defaults apply";
}

TEST(FoakctlFlags, ASubsetOfSpecFlags) {
  FlagSet flags("t", "");
  AddJobSpecFlags(&flags, {"model", "gpus"});
  const std::string help = flags.Help();
  EXPECT_NE(help.find("--model DIR"), std::string::npos);
  EXPECT_EQ(help.find("--train"), std::string::npos);
  EXPECT_EQ(ExitCodeFor(flags.Parse({"--train", "/t"})), kExitUsage);
  // Only the named flags are applied, whoever declared them.
  FlagSet own("t", "");
  AddJobSpecFlags(&own, {"model"});
  own.AddRepeated("kernels", 0, "SET", "");
  ASSERT_TRUE(own.Parse({"--model", "/m", "--kernels", "rms_norm,rope"}).ok());
  foak::v1::JobSpec spec;
  ASSERT_TRUE(ApplyJobSpecFlags(own, {"model"}, &spec).ok());
  EXPECT_EQ(spec.model(), "/m");
  EXPECT_TRUE(spec.kernels().empty());
}

TEST(FoakctlFlags, GpusAndProcessesFillResources) {
  FlagSet flags("t", "");
  AddJobSpecFlags(&flags);
  EXPECT_NE(flags.Help().find("--processes N"), std::string::npos) << flags.Help();
  ASSERT_TRUE(flags.Parse({"--processes", "4"}).ok());
  foak::v1::JobSpec spec;
  ASSERT_TRUE(ApplyJobSpecFlags(flags, &spec).ok());
  EXPECT_EQ(spec.resources().processes(), 4);
  EXPECT_EQ(spec.resources().gpus(), 0);
  // A flag overrides the job file's value and leaves its other resources.
  foak::v1::JobSpec from_file;
  from_file.mutable_resources()->set_processes(2);
  from_file.mutable_resources()->set_gpus(0);
  ASSERT_TRUE(ApplyJobSpecFlags(flags, &from_file).ok());
  EXPECT_EQ(from_file.resources().processes(), 4);
  // foakd checks the range and the match with --gpus; foakctl only the number.
  FlagSet bad("t", "");
  AddJobSpecFlags(&bad);
  ASSERT_TRUE(bad.Parse({"--processes", "many"}).ok());
  const absl::Status s = ApplyJobSpecFlags(bad, &spec);
  EXPECT_EQ(ExitCodeFor(s), kExitUsage) << s;
  EXPECT_NE(s.message().find("--processes"), absl::string_view::npos) << s;
}

TEST(FoakctlFlags, ZeroStageShardsTheOptimizerStateOrIsAUsageError) {
  FlagSet flags("t", "");
  AddJobSpecFlags(&flags);
  EXPECT_NE(flags.Help().find("--zero-stage 0|1"), std::string::npos) << flags.Help();
  ASSERT_TRUE(flags.Parse({"--zero-stage", "1", "--gpus", "2"}).ok());
  foak::v1::JobSpec spec;
  ASSERT_TRUE(ApplyJobSpecFlags(flags, &spec).ok());
  EXPECT_EQ(spec.hyperparameters().zero_stage(), 1);
  EXPECT_EQ(spec.resources().gpus(), 2);
  FlagSet bad("t", "");
  AddJobSpecFlags(&bad);
  ASSERT_TRUE(bad.Parse({"--zero-stage", "3"}).ok());
  const absl::Status s = ApplyJobSpecFlags(bad, &spec);
  EXPECT_EQ(ExitCodeFor(s), kExitUsage) << s;
  EXPECT_NE(s.message().find("--zero-stage: 3; use 0 (no sharding) or 1"), absl::string_view::npos)
      << s;
}

TEST(FoakctlJobView, DataParallelJobShowsProcessesAndMemoryByRank) {
  foak::v1::Job job;
  job.set_id("job-1");
  job.set_state(foak::v1::Job::RUNNING);
  job.mutable_spec()->mutable_resources()->set_processes(3);
  foak::v1::JobProgress* p = job.mutable_progress();
  p->set_step(4);
  p->set_max_steps(10);
  p->set_loss(2.5);
  p->set_peak_memory_bytes(int64_t{3} << 29);
  p->add_rank_peak_memory_bytes(int64_t{3} << 29);
  p->add_rank_peak_memory_bytes(int64_t{1} << 30);
  p->add_rank_peak_memory_bytes(0);  // not heard from yet
  const std::string details = JobDetails(job, absl::Now(), absl::UTCTimeZone());
  EXPECT_NE(details.find("Processes:       3\n"), std::string::npos) << details;
  EXPECT_NE(details.find("Memory by rank:  0: 1.5 GiB  1: 1.0 GiB  2: -\n"), std::string::npos)
      << details;
  // A job of one rank shows neither.
  job.mutable_spec()->clear_resources();
  job.mutable_progress()->clear_rank_peak_memory_bytes();
  const std::string one = JobDetails(job, absl::Now(), absl::UTCTimeZone());
  EXPECT_EQ(one.find("Processes:"), std::string::npos) << one;
  EXPECT_EQ(one.find("Memory by rank:"), std::string::npos) << one;
  EXPECT_NE(one.find("mem 1.5 GiB"), std::string::npos) << one;
}

// Kubernetes placement: --nodes, --node-selector KEY=VALUE, --toleration in
// `kubectl taint`'s KEY[=VALUE][:EFFECT] form, --queue; `get` shows them.
TEST(FoakctlFlags, KubernetesPlacementFlags) {
  FlagSet flags("t", "");
  AddJobSpecFlags(&flags);
  EXPECT_NE(flags.Help().find("--toleration KEY[=VALUE][:EFFECT]"), std::string::npos);
  ASSERT_TRUE(flags.Parse({"--gpus", "8", "--nodes", "2", "--node-selector", "pool=h100",
                           "--node-selector", "zone=a", "--toleration", "nvidia.com/gpu:NoSchedule",
                           "--toleration", "dedicated=ml:NoExecute", "--toleration", "spot",
                           "--queue", "team-a"})
                  .ok());
  foak::v1::JobSpec spec;
  ASSERT_TRUE(ApplyJobSpecFlags(flags, &spec).ok());
  const foak::v1::Resources& r = spec.resources();
  EXPECT_EQ(r.nodes(), 2);
  EXPECT_EQ(r.node_selector().at("pool"), "h100");
  EXPECT_EQ(r.node_selector().at("zone"), "a");
  ASSERT_EQ(r.tolerations_size(), 3);
  EXPECT_EQ(r.tolerations(0).key(), "nvidia.com/gpu");
  EXPECT_EQ(r.tolerations(0).operator_(), "Exists");
  EXPECT_EQ(r.tolerations(0).effect(), "NoSchedule");
  EXPECT_EQ(r.tolerations(1).key(), "dedicated");
  EXPECT_EQ(r.tolerations(1).operator_(), "Equal");
  EXPECT_EQ(r.tolerations(1).value(), "ml");
  EXPECT_EQ(r.tolerations(1).effect(), "NoExecute");
  EXPECT_EQ(r.tolerations(2).key(), "spot");
  EXPECT_EQ(r.tolerations(2).effect(), "");
  EXPECT_EQ(r.queue(), "team-a");

  foak::v1::Job job;
  job.set_id("job-1");
  *job.mutable_spec() = spec;
  const std::string details = JobDetails(job, absl::Now(), absl::UTCTimeZone());
  // The value after "Label:" and the alignment spaces.
  auto value = [&](const std::string& label) -> std::string {
    const size_t at = details.find("\n" + label + ":");
    if (at == std::string::npos) return "<missing>";
    size_t from = details.find_first_not_of(' ', at + label.size() + 2);
    return details.substr(from, details.find('\n', from) - from);
  };
  EXPECT_EQ(value("Nodes"), "2") << details;
  EXPECT_EQ(value("Node selector"), "pool=h100, zone=a");
  EXPECT_EQ(value("Tolerations"), "nvidia.com/gpu:NoSchedule, dedicated=ml:NoExecute, spot");
  EXPECT_EQ(value("Queue"), "team-a");

  for (const char* bad : {"=x", ":NoSchedule", "pool"}) {
    FlagSet b("t", "");
    AddJobSpecFlags(&b);
    const bool selector = std::string(bad) == "pool";
    ASSERT_TRUE(b.Parse({selector ? "--node-selector" : "--toleration", bad}).ok());
    foak::v1::JobSpec s;
    const absl::Status status = ApplyJobSpecFlags(b, &s);
    EXPECT_EQ(ExitCodeFor(status), kExitUsage) << bad << ": " << status;
    EXPECT_NE(status.message().find(selector ? "is not KEY=VALUE" : "names no taint key"),
              absl::string_view::npos)
        << status;
  }
}

TEST(FoakctlFlags, FindsTheCommandAfterGlobalFlags) {
  FlagSet globals("t", "");
  globals.AddValue("server", 0, "HOST:PORT", "");
  globals.AddValue("output", 'o', "FORMAT", "");
  EXPECT_EQ(globals.FindFirstPositional({"--server", "h:1", "-o", "json", "list"}), 4);
  EXPECT_EQ(globals.FindFirstPositional({"--server=h:1", "-ojson", "get", "x"}), 2);
  EXPECT_EQ(globals.FindFirstPositional({"--server", "h:1"}), -1);
}

TEST(FoakctlSha256, KnownDigests) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 streamed;
  streamed.Update("a");
  streamed.Update("bc");
  EXPECT_EQ(streamed.HexDigest(), Sha256Hex("abc"));
}

TEST(FoakctlPaths, RelativePathsBecomeAbsoluteButFileIdsStay) {
  EXPECT_EQ(AbsoluteLocalPath("./data/a.jsonl", "/w"), "/w/data/a.jsonl");
  EXPECT_EQ(AbsoluteLocalPath("data/a.jsonl", "/w/"), "/w/data/a.jsonl");
  EXPECT_EQ(AbsoluteLocalPath(".", "/w"), "/w");
  EXPECT_EQ(AbsoluteLocalPath("/abs", "/w"), "/abs");
  EXPECT_EQ(AbsoluteLocalPath("", "/w"), "");
  EXPECT_EQ(AbsoluteLocalPath("file-0123456789abcdef", "/w"), "file-0123456789abcdef");
  EXPECT_EQ(AbsoluteLocalPath("file-notanid", "/w"), "/w/file-notanid");
  foak::v1::JobSpec spec;
  spec.mutable_resume_from_checkpoint()->set_string_value("latest");
  spec.set_output_dir("out");
  MakeLocalPathsAbsolute("/w", &spec);
  EXPECT_EQ(spec.resume_from_checkpoint().string_value(), "latest");
  EXPECT_EQ(spec.output_dir(), "/w/out");
  EXPECT_FALSE(spec.has_dataset());
}

TEST(FoakctlProgress, EtaFromTheRecentRateAndRestartsReset) {
  ProgressLine line;
  EXPECT_FALSE(line.Eta().has_value());
  foak::v1::StepMetrics m;
  m.set_max_steps(100);
  m.set_step(10);
  m.set_elapsed_s(100);  // slow start: 0.1 step/s
  line.AddMetrics(m);
  EXPECT_EQ(*line.Eta(), absl::Seconds(900));
  m.set_step(20);
  m.set_elapsed_s(110);  // now 1 step/s over the window
  line.AddMetrics(m);
  EXPECT_EQ(*line.Eta(), absl::Seconds(80));
  m.set_step(30);
  m.set_elapsed_s(5);  // relaunched: the window starts again
  line.AddMetrics(m);
  EXPECT_EQ(*line.Eta(), absl::Seconds(70.0 * 5 / 30));
  m.set_rank(1);
  m.set_step(99);
  line.AddMetrics(m);  // other ranks do not move the line
  EXPECT_NE(line.Text().find("step 30/100"), std::string::npos) << line.Text();
}

TEST(FoakctlErrors, ExitCodes) {
  EXPECT_EQ(ExitCodeFor(UsageError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("x")), kExitError);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("x")), kExitUnreachable);
  EXPECT_EQ(ExitCodeFor(ServerError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "f"))), kExitRefused);
  EXPECT_EQ(ExitCodeFor(ServerError(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "f"))), kExitRefused);
  EXPECT_EQ(ExitCodeFor(ServerError(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "f"))),
            kExitRefused);
  EXPECT_EQ(ExitCodeFor(ServerError(grpc::Status(grpc::StatusCode::NOT_FOUND, "f"))), kExitNotFound);
  EXPECT_EQ(ExitCodeFor(ServerError(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "f"))),
            kExitUnreachable);
  EXPECT_EQ(ExitCodeFor(ServerError(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "f"))),
            kExitError);
}

}  // namespace
}  // namespace foak::client
