// `foak-worker train`: a thin adapter from flags to RunTrainJob
// (worker/train/train_job.h), which owns everything about a training run.
#include <cstdio>

#include "common/status_macros.h"
#include "worker/cli/commands.h"
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
    "is written to <output_dir>/final in Hugging Face format.\n"
    "  --resume R   overrides the job's resume_from_checkpoint: latest (the newest\n"
    "               complete <output_dir>/checkpoint-<step>, or a fresh start when\n"
    "               there is none), PATH (that checkpoint folder) or none\n";

absl::Status RunTrain(const Flags& flags) {
  ASSIGN_OR_RETURN(JobConfig job, LoadJobConfig(flags.Get("job")));
  if (flags.Has("resume")) {
    job.resume_from_checkpoint = ParseResumeFlag(flags.Get("resume"));
  }
  return RunTrainJob(job, stdout, stderr);
}

}  // namespace

Command TrainCommand() {
  return {"train", kTrainUsage, {"job", "resume"}, {}, {"job"}, nullptr, RunTrain};
}

}  // namespace foak
