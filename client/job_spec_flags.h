// `foakctl submit` flags that fill JobSpec fields, and the local-path rule.
//
// Flags override the fields of a -f job file one by one (a flag given sets
// exactly its field; --label adds or replaces one label), so a shared job
// file can be varied per run: `submit -f base.yaml --learning-rate 1e-4`.
//
// Relative paths are resolved against foakctl's working directory before the
// spec is sent, exactly as `foak-worker train --job FILE` resolves them:
// foakd runs in another directory, so "data/train.jsonl" would otherwise name
// a different file there. Uploaded file ids ("file-" + 16 hex digits) are
// left alone.
#ifndef FOAK_CLIENT_JOB_SPEC_FLAGS_H_
#define FOAK_CLIENT_JOB_SPEC_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/flag_set.h"
#include "foak/v1/job.pb.h"

namespace foak::client {

// Declares --name, --model, --train, ... on `flags` (submit: all of them).
void AddJobSpecFlags(FlagSet* flags);
// Declares only the flags in `names` ("model", "lora-r", ...), in the order
// of the full list; a command calls it once per group to order its help
// (bench declares a few and has its own --kernels).
void AddJobSpecFlags(FlagSet* flags, const std::vector<std::string>& names);

// True when any of the flags of AddJobSpecFlags was given.
bool AnyJobSpecFlagSet(const FlagSet& flags);

// Sets the fields named by the given flags. A malformed value (not a number,
// --method other than full|lora|qlora, --precision other than
// bf16-mixed|bf16|fp32, --label without '=') is a usage error, and so is a
// LoRA flag with method full (one with no method implies lora) or
// --double-quant with a method other than qlora (it implies qlora).
absl::Status ApplyJobSpecFlags(const FlagSet& flags, foak::v1::JobSpec* spec);
// The same for the flags in `names` only, whoever declared them (bench
// declares --precision and --gpus itself, for its own defaults in the help).
absl::Status ApplyJobSpecFlags(const FlagSet& flags, const std::vector<std::string>& names,
                               foak::v1::JobSpec* spec);

// "file-" followed by 16 lowercase hex digits.
bool IsUploadedFileId(absl::string_view value);

// `path` made absolute against `cwd` ("./a" and "a" -> "<cwd>/a"); absolute
// paths, empty values and uploaded file ids are returned unchanged.
std::string AbsoluteLocalPath(const std::string& path, const std::string& cwd);

// Applies AbsoluteLocalPath to model, dataset.train, dataset.validation,
// output_dir and a resume_from_checkpoint path (not "latest"/true/false).
void MakeLocalPathsAbsolute(const std::string& cwd, foak::v1::JobSpec* spec);

// The current directory, or "" when it cannot be read.
std::string CurrentDirectory();

}  // namespace foak::client

#endif  // FOAK_CLIENT_JOB_SPEC_FLAGS_H_
