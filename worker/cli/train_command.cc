// `foak-worker train`: a thin adapter from flags to RunTrainJob
// (worker/train/train_job.h), which owns everything about a training run.
// Launched by foakd (FOAK_COORDINATOR etc. in the environment), it also
// reports the run's progress to foakd (worker/report/); that reporter's header
// is plain C++, so this torch-facing file never sees protobuf or gRPC headers.
#include <cstdio>
#include <memory>

#include "common/status_macros.h"
#include "worker/bench/bench_job.h"
#include "worker/cli/commands.h"
#include "worker/report/coordinator_reporter.h"
#include "worker/train/job.h"
#include "worker/train/train_job.h"

namespace foak {
namespace {

constexpr char kTrainUsage[] =
    "Usage: foak-worker train --job FILE [--resume latest|PATH]\n"
    "\n"
    "Fine-tunes the model of a JSON job file (see examples/demo_job.json and\n"
    "worker/train/job.h for every field and its default). Metrics go to stdout and\n"
    "<output_dir>/metrics.jsonl (one JSON line per logged step); the trained model\n"
    "is written to <output_dir>/final in Hugging Face format. A job with a \"bench\"\n"
    "object is a benchmark instead: each kernel set timed on random tokens, one\n"
    "JSON line per row in <output_dir>/bench.jsonl (worker/bench/bench_job.h).\n"
    "  --resume R   overrides the job's resume_from_checkpoint: latest (the newest\n"
    "               complete <output_dir>/checkpoint-<step>, or a fresh start when\n"
    "               there is none), PATH (that checkpoint folder) or none\n"
    "When FOAK_COORDINATOR (host:port of foakd) is set, as foakd does, progress is\n"
    "also reported there; FOAK_JOB_ID and FOAK_JOB_TOKEN must then be set too\n"
    "(FOAK_JOB_ATTEMPT and RANK are optional).\n";

// How long a finished run waits for foakd to take the last reports.
constexpr absl::Duration kReportFlushTimeout = absl::Seconds(10);

absl::Status RunTrain(const Flags& flags) {
  ASSIGN_OR_RETURN(JobConfig job, LoadJobConfig(flags.Get("job")));
  if (flags.Has("resume")) {
    job.resume_from_checkpoint = ParseResumeFlag(flags.Get("resume"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorReporter> reporter,
                   CoordinatorReporter::FromEnvironment());
  // A job with a "bench" object is a benchmark (worker/bench/bench_job.h).
  const absl::Status status = job.bench.enabled
                                  ? RunBenchJob(job, stdout, stderr, reporter.get())
                                  : RunTrainJob(job, stdout, stderr, reporter.get());
  if (reporter != nullptr) {
    // Failing to report never fails the run: metrics.jsonl has everything.
    const absl::Status closed = reporter->Close(kReportFlushTimeout);
    if (!closed.ok()) {
      std::fprintf(stderr, "foak-worker: warning: %s\n", closed.ToString().c_str());
    }
  }
  return status;
}

}  // namespace

Command TrainCommand() {
  return {"train", kTrainUsage, {"job", "resume"}, {}, {"job"}, nullptr, RunTrain};
}

}  // namespace foak
