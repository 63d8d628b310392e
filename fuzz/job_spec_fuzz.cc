// Fuzzes job-spec validation: foakd's PrepareJobSpec / CoordinatorFields /
// WorkerJobJson (server/domain/job_spec.h) and the worker's own job parser
// ParseJobConfig (worker/train/job.h) that they share. A spec arrives from any
// client of foakd's gRPC API.
//
// The input is a spec as JSON. Paths on the coordinator's host are checked
// for real, so LLVMFuzzerInitialize makes a fixed fixture folder the seed
// corpus names: /tmp/foak-fuzz-job/model (with config.json) and
// /tmp/foak-fuzz-job/{train,valid}.jsonl. Uploaded file ids resolve to
// train.jsonl, except file-000000000000dead, which is unknown.
//
// Invariants: what PrepareJobSpec accepts, CoordinatorFields accepts with the
// same numbers, and WorkerJobJson turns into a job file the worker's parser
// accepts, for a first launch and a restart. foakd's promise is that a job
// it queued never fails the worker's validation.
#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/file_util.h"
#include "fuzz/fuzz_util.h"
#include "server/domain/job_spec.h"
#include "worker/train/job.h"

namespace {

constexpr char kFixture[] = "/tmp/foak-fuzz-job";

void WriteFixtureFile(const std::string& path, const std::string& contents) {
  if (!foak::WriteFileAtomically(path, contents).ok()) {
    std::fprintf(stderr, "job_spec_fuzz: cannot write fixture %s\n", path.c_str());
    std::abort();
  }
}

foak::JobSpecContext Context(bool cluster) {
  foak::JobSpecContext context;
  context.total_gpus = 2;
  context.cluster = cluster;
  context.resolve_file = [](const std::string& id) -> absl::StatusOr<std::string> {
    if (id == "file-000000000000dead") return absl::NotFoundError("no uploaded file " + id);
    return std::string(kFixture) + "/train.jsonl";
  };
  return context;
}

void Check(const std::string& spec, bool cluster) {
  const foak::JobSpecContext context = Context(cluster);
  absl::StatusOr<foak::PreparedJobSpec> prepared = foak::PrepareJobSpec(spec, context);
  absl::StatusOr<foak::PreparedJobSpec> fields = foak::CoordinatorFields(spec, context);
  foak::fuzz::Explain(cluster ? "PrepareJobSpec (cluster)" : "PrepareJobSpec", prepared.status());
  if (!prepared.ok()) return;
  FUZZ_CHECK(fields.ok());
  FUZZ_CHECK(fields->gpus == prepared->gpus && fields->processes == prepared->processes &&
             fields->nodes == prepared->nodes && fields->priority == prepared->priority);
  for (bool restart : {false, true}) {
    foak::WorkerLaunchSettings settings;
    settings.output_dir = std::string(kFixture) + "/out";
    settings.device = prepared->gpus > 0 ? "cuda" : "cpu";
    settings.restart = restart;
    absl::StatusOr<std::string> job = foak::WorkerJobJson(prepared->spec_json, settings, context);
    if (!job.ok()) {
      std::fprintf(stderr, "WorkerJobJson refused an accepted spec: %s\n",
                   std::string(job.status().message()).c_str());
    }
    FUZZ_CHECK(job.ok());
    FUZZ_CHECK(foak::ParseJobConfig(*job, "job.json").ok());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const std::string root = kFixture;
  if (!foak::MakeDirs(root + "/model").ok()) {
    std::fprintf(stderr, "job_spec_fuzz: cannot create %s/model\n", root.c_str());
    std::abort();
  }
  WriteFixtureFile(root + "/model/config.json", "{\"model_type\": \"llama\"}\n");
  WriteFixtureFile(root + "/train.jsonl", "{\"text\": \"hello\"}\n");
  WriteFixtureFile(root + "/valid.jsonl", "{\"text\": \"bye\"}\n");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string spec(foak::fuzz::AsText(data, size));
  // The worker reads its job file with the same parser.
  foak::fuzz::Explain("ParseJobConfig", foak::ParseJobConfig(spec, "job.json").status());
  Check(spec, /*cluster=*/false);
  Check(spec, /*cluster=*/true);
  return 0;
}
