// End-to-end runs of the foak-worker binary: init-model -> train -> an HF
// checkpoint and metrics; forward; and the failures a user meets (bad job
// file, corrupt model folder, bad dataset line, bad usage), each of which must
// exit 1 with a message naming the culprit and leave no "final" folder.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/worker_run.h"
#include "nlohmann/json.hpp"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"

namespace foak {
namespace {

using testing::TempDir;

using RunResult = testing::WorkerResult;

RunResult Worker(const std::string& args) { return testing::RunWorkerCapture(args); }

std::string DebugConfig() { return std::string(FOAK_SOURCE_DIR) + "/examples/debug_model/config.json"; }

std::string WriteData(const std::string& dir) {
  std::string text;
  const std::vector<std::string> lines = {
      "The cat sat on the mat.", "A train left the station at noon.",
      "Bread rises in a warm kitchen.", "The tide came in over the sand.",
      "Snow fell on the mountain path.", "The library opened at nine."};
  for (int i = 0; i < 4; ++i) {
    for (const std::string& l : lines) text += "{\"text\": \"" + l + "\"}\n";
  }
  const std::string path = dir + "/train.jsonl";
  EXPECT_TRUE(WriteFileAtomically(path, text).ok());
  return path;
}

// A small, fast job; `extra_hp` is spliced into "hyperparameters".
std::string WriteJob(const std::string& dir, const std::string& model, const std::string& data,
                     const std::string& out, const std::string& extra_hp = "") {
  const std::string job = R"({"name": "cli-test", "model": ")" + model +
                          R"(", "dataset": {"train": ")" + data + R"("}, "output_dir": ")" + out +
                          R"(", "device": "cpu", "hyperparameters": {"learning_rate": 0.003,
      "max_steps": 3, "batch_size": 2, "max_seq_len": 48, "precision": "fp32",
      "logging_steps": 1, "save_steps": 2, "warmup_steps": 1)" + extra_hp + "}}";
  const std::string path = dir + "/job.json";
  EXPECT_TRUE(WriteFileAtomically(path, job).ok());
  return path;
}

std::vector<nlohmann::json> ReadMetrics(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(WorkerCli, InitModelThenTrainWritesMetricsAndHfCheckpoint) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  RunResult init = Worker("init-model --config " + DebugConfig() + " --out " + dir + "/model --seed 3");
  ASSERT_EQ(init.exit_code, 0) << init.err;
  ASSERT_TRUE(PathExists(dir + "/model/config.json"));
  ASSERT_TRUE(PathExists(dir + "/model/model.safetensors"));
  ASSERT_TRUE(WriteFileAtomically(dir + "/model/tokenizer_config.json", "{}").ok());

  const std::string job = WriteJob(dir, dir + "/model", WriteData(dir), dir + "/out");
  RunResult train = Worker("train --job " + job);
  ASSERT_EQ(train.exit_code, 0) << train.err;
  std::vector<nlohmann::json> metrics = ReadMetrics(dir + "/out/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const nlohmann::json& m = metrics[i];
    EXPECT_EQ(m.at("step"), i + 1);
    for (const char* key : {"loss", "learning_rate", "grad_norm", "tokens", "tokens_per_second",
                            "peak_memory_bytes", "elapsed_s"}) {
      EXPECT_TRUE(m.contains(key)) << key;
    }
    EXPECT_GT(m.at("loss").get<double>(), 0.0);
    EXPECT_GT(m.at("tokens").get<int64_t>(), 0);
    EXPECT_GT(m.at("peak_memory_bytes").get<int64_t>(), 0);
  }
  EXPECT_EQ(metrics[0].at("learning_rate").get<double>(), 0.0);  // warm-up starts at 0
  // The same lines went to stdout.
  EXPECT_NE(train.out.find("\"step\":3"), std::string::npos) << train.out;

  EXPECT_TRUE(PathExists(dir + "/out/checkpoint-2/model.safetensors"));
  auto config = LoadModelConfig(dir + "/out/final");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->vocab_size, 258);
  EXPECT_EQ(config->hidden_size, 64);
  auto weights = SafetensorsFile::Open(dir + "/out/final/model.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_NE((*weights)->Find("lm_head.weight"), nullptr);
  EXPECT_NE((*weights)->Find("model.layers.1.mlp.down_proj.weight"), nullptr);
  EXPECT_TRUE(PathExists(dir + "/out/final/tokenizer_config.json"));

  // Same job, same seed: bit-identical losses.
  const std::string job2 = WriteJob(dir, dir + "/model", dir + "/train.jsonl", dir + "/out2");
  ASSERT_EQ(Worker("train --job " + job2).exit_code, 0);
  std::vector<nlohmann::json> again = ReadMetrics(dir + "/out2/metrics.jsonl");
  ASSERT_EQ(again.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(again[i].at("loss"), metrics[i].at("loss"));
}

TEST(WorkerCli, ForwardWritesLogits) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_EQ(Worker("init-model --config " + DebugConfig() + " --out " + dir + "/model").exit_code, 0);
  RunResult r = Worker("forward --model " + dir + "/model --input-ids '256,72,105;256,33,257' "
                       "--position-ids '0,1,2;0,1,0' --device cpu --out " + dir + "/logits.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto file = SafetensorsFile::Open(dir + "/logits.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* logits = (*file)->Find("logits");
  ASSERT_NE(logits, nullptr);
  EXPECT_EQ(logits->dtype, DType::kF32);
  EXPECT_EQ(logits->shape, (std::vector<int64_t>{2, 3, 258}));
  const TensorInfo* ids = (*file)->Find("input_ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, DType::kI64);
  const int64_t* id_data = static_cast<const int64_t*>((*file)->Data(*ids));
  EXPECT_EQ(id_data[4], 33);
  EXPECT_NE((*file)->Find("position_ids"), nullptr);

  RunResult bad = Worker("forward --model " + dir + "/model --input-ids 1,2,999 --out " + dir + "/x.safetensors");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("999"), std::string::npos) << bad.err;
  EXPECT_FALSE(PathExists(dir + "/x.safetensors"));
}

// The foak-saved adapter of tests/testdata/peft/foak_export/ on its base model
// gives the recorded logits through the CLI (PEFT gave the same, see the
// README there); without the adapter the logits are far from them.
TEST(WorkerCli, ForwardWithAdapterGivesTheRecordedLogits) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  const std::string testdata = FOAK_TESTDATA_DIR;
  auto ref = SafetensorsFile::Open(testdata + "/peft/foak_export/logits.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const TensorInfo* ref_ids = (*ref)->Find("input_ids");
  const TensorInfo* ref_logits = (*ref)->Find("logits");
  ASSERT_NE(ref_ids, nullptr);
  ASSERT_NE(ref_logits, nullptr);
  ASSERT_EQ(ref_ids->shape.size(), 2u);
  std::string ids;  // "a,b;c,d"
  const int64_t* id_data = static_cast<const int64_t*>((*ref)->Data(*ref_ids));
  for (int64_t b = 0; b < ref_ids->shape[0]; ++b) {
    for (int64_t t = 0; t < ref_ids->shape[1]; ++t) {
      ids += (t == 0 ? (b == 0 ? "" : ";") : ",") +
             std::to_string(id_data[b * ref_ids->shape[1] + t]);
    }
  }
  // Max |got - want| / max |want| over the logits.
  auto rel_error = [&](const std::string& path) {
    auto got = SafetensorsFile::Open(path);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return 1e30;
    const TensorInfo* logits = (*got)->Find("logits");
    EXPECT_NE(logits, nullptr);
    if (logits == nullptr || logits->shape != ref_logits->shape) return 1e30;
    const float* g = static_cast<const float*>((*got)->Data(*logits));
    const float* w = static_cast<const float*>((*ref)->Data(*ref_logits));
    double max_diff = 0, max_ref = 0;
    for (uint64_t i = 0; i < static_cast<uint64_t>(ref_logits->NumElements()); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(g[i] - w[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(w[i])));
    }
    return max_diff / max_ref;
  };
  const std::string base = "forward --model " + testdata +
                           "/parity/llama3_gqa --device cpu --input-ids '" + ids + "'";
  RunResult adapted = Worker(base + " --adapter " + testdata + "/peft/foak_export/adapter --out " +
                             dir + "/adapted.safetensors");
  ASSERT_EQ(adapted.exit_code, 0) << adapted.err;
  EXPECT_LE(rel_error(dir + "/adapted.safetensors"), 1e-6);
  RunResult plain = Worker(base + " --out " + dir + "/plain.safetensors");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_GE(rel_error(dir + "/plain.safetensors"), 0.1);

  RunResult missing =
      Worker(base + " --adapter " + dir + "/no_adapter --out " + dir + "/x.safetensors");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find(dir + "/no_adapter"), std::string::npos) << missing.err;
  EXPECT_FALSE(PathExists(dir + "/x.safetensors"));
}

TEST(WorkerCli, BadJobFileNamesTheField) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  const std::string job = WriteJob(dir, dir + "/model", dir + "/train.jsonl", dir + "/out",
                                   R"(, "lr_scheduler": "cosin")");
  RunResult r = Worker("train --job " + job);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("foak-worker: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("hyperparameters.lr_scheduler = 'cosin'"), std::string::npos) << r.err;
  EXPECT_FALSE(PathExists(dir + "/out"));
}

// A model folder made by init-model, then damaged by `damage`.
void ExpectCorruptModelFails(const std::string& what, void (*damage)(const std::string&),
                             const std::string& expected_in_message) {
  SCOPED_TRACE(what);
  const TempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_EQ(Worker("init-model --config " + DebugConfig() + " --out " + dir + "/model").exit_code, 0);
  damage(dir + "/model");
  const std::string job = WriteJob(dir, dir + "/model", WriteData(dir), dir + "/out");
  RunResult r = Worker("train --job " + job);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("foak-worker: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(expected_in_message), std::string::npos) << r.err;
  EXPECT_FALSE(PathExists(dir + "/out/final"));
}

TEST(WorkerCli, CorruptModelFolderFailsNamingTheFile) {
  ExpectCorruptModelFails(
      "corrupt config.json",
      [](const std::string& model) {
        ASSERT_TRUE(WriteFileAtomically(model + "/config.json", "{\"model_type\": \"llama\",").ok());
      },
      "config.json");
  ExpectCorruptModelFails(
      "truncated safetensors",
      [](const std::string& model) {
        std::string bytes = *ReadFileToString(model + "/model.safetensors");
        ASSERT_TRUE(WriteFileAtomically(model + "/model.safetensors", bytes.substr(0, bytes.size() / 2)).ok());
      },
      "model.safetensors");
  ExpectCorruptModelFails(
      "vocabulary too small for the byte tokenizer",
      [](const std::string& model) {
        std::string text = *ReadFileToString(model + "/config.json");
        nlohmann::json j = nlohmann::json::parse(text);
        j["vocab_size"] = 200;
        ASSERT_TRUE(WriteFileAtomically(model + "/config.json", j.dump()).ok());
      },
      "vocab_size = 200");
}

// Rewrites the model's config.json through `edit`.
void EditConfig(const std::string& model, void (*edit)(nlohmann::json&)) {
  nlohmann::json j = nlohmann::json::parse(*ReadFileToString(model + "/config.json"));
  edit(j);
  ASSERT_TRUE(WriteFileAtomically(model + "/config.json", j.dump()).ok());
}

// Replaces the first `from` in model.safetensors' JSON header by `to` (same
// length, so the data offsets stay valid).
void EditSafetensorsHeader(const std::string& model, const std::string& from,
                           const std::string& to) {
  ASSERT_EQ(from.size(), to.size());
  std::string bytes = *ReadFileToString(model + "/model.safetensors");
  const size_t at = bytes.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  ASSERT_LT(at, 8 + static_cast<size_t>(static_cast<unsigned char>(bytes[0])) +
                    256 * static_cast<size_t>(static_cast<unsigned char>(bytes[1])));
  bytes.replace(at, from.size(), to);
  ASSERT_TRUE(WriteFileAtomically(model + "/model.safetensors", bytes).ok());
}

TEST(WorkerCli, DamagedWeightsAndConfigFailNamingWhatIsWrong) {
  ExpectCorruptModelFails(
      "no config.json",
      [](const std::string& model) { ASSERT_EQ(::unlink((model + "/config.json").c_str()), 0); },
      "config.json");
  ExpectCorruptModelFails(
      "unsupported model_type",
      [](const std::string& model) {
        EditConfig(model, [](nlohmann::json& j) { j["model_type"] = "gpt2"; });
      },
      "gpt2");
  ExpectCorruptModelFails(
      "config.json disagrees with the tensor shapes",
      [](const std::string& model) {
        EditConfig(model, [](nlohmann::json& j) { j["intermediate_size"] = 180; });
      },
      "model.layers.0.mlp.gate_proj.weight' has shape [172,64] but config.json (intermediate_size=180");
  ExpectCorruptModelFails(
      "unknown dtype in the header",
      [](const std::string& model) { EditSafetensorsHeader(model, "\"F32\"", "\"Q32\""); },
      "Q32");
  ExpectCorruptModelFails(
      "a tensor missing (renamed in the header)",
      [](const std::string& model) {
        EditSafetensorsHeader(model, "model.norm.weight", "model.norm.weighX");
      },
      "model.norm.weight");
}

TEST(WorkerCli, BadDatasetLineNamesFileAndLine) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_EQ(Worker("init-model --config " + DebugConfig() + " --out " + dir + "/model").exit_code, 0);
  ASSERT_TRUE(WriteFileAtomically(dir + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n").ok());
  RunResult r = Worker("train --job " + WriteJob(dir, dir + "/model", dir + "/bad.jsonl", dir + "/out"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir + "/bad.jsonl:2:"), std::string::npos) << r.err;
  EXPECT_FALSE(PathExists(dir + "/out/final"));
}

// Overwrites the values of tensor `name` (F32) in model.safetensors with NaN.
void PoisonTensor(const std::string& model, const std::string& name) {
  std::string bytes = *ReadFileToString(model + "/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len * 256 + static_cast<unsigned char>(bytes[i]);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, header_len));
  ASSERT_EQ(header.at(name).at("dtype").get<std::string>(), "F32");
  const uint64_t begin = header.at(name).at("data_offsets")[0].get<uint64_t>();
  const uint64_t end = header.at(name).at("data_offsets")[1].get<uint64_t>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (uint64_t at = 8 + header_len + begin; at < 8 + header_len + end; at += 4) {
    std::memcpy(&bytes[at], &nan, 4);
  }
  ASSERT_TRUE(WriteFileAtomically(model + "/model.safetensors", bytes).ok());
}

TEST(WorkerCli, ANonFiniteLossEndsTheRunWithExitCode3NamingTheStep) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_EQ(Worker("init-model --config " + DebugConfig() + " --out " + dir + "/model").exit_code, 0);
  PoisonTensor(dir + "/model", "model.norm.weight");
  const std::string data = WriteData(dir);

  RunResult fail = Worker("train --job " + WriteJob(dir, dir + "/model", data, dir + "/out"));
  EXPECT_EQ(fail.exit_code, 3) << fail.err;
  EXPECT_NE(fail.err.find("step 1: the loss is nan and the gradient norm nan"), std::string::npos)
      << fail.err;
  EXPECT_NE(fail.err.find("on_nonfinite = \"skip\""), std::string::npos) << fail.err;
  EXPECT_FALSE(PathExists(dir + "/out/final"));
  EXPECT_FALSE(PathExists(dir + "/out/checkpoint-2"));

  // "skip": each step is logged with a null loss and skipped; the second in
  // a row is one more than max_consecutive_skips = 1.
  RunResult skip = Worker(
      "train --job " + WriteJob(dir, dir + "/model", data, dir + "/out-skip",
                                R"(, "on_nonfinite": "skip", "max_consecutive_skips": 1)"));
  EXPECT_EQ(skip.exit_code, 3) << skip.err;
  EXPECT_NE(skip.err.find("step 1: the loss is nan and the gradient norm nan; its update was "
                          "skipped (on_nonfinite = \"skip\", 1 in a row)"),
            std::string::npos)
      << skip.err;
  EXPECT_NE(skip.err.find("step 2: the loss is nan and the gradient norm nan; that makes 2 "
                          "non-finite steps in a row, more than "
                          "hyperparameters.max_consecutive_skips = 1"),
            std::string::npos)
      << skip.err;
  std::vector<nlohmann::json> metrics = ReadMetrics(dir + "/out-skip/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0].at("step"), 1);
  EXPECT_TRUE(metrics[0].at("loss").is_null()) << metrics[0].dump();
}

// A file-size limit (the shell's `ulimit -f`, a per-process "disk full")
// that the first checkpoint is written before and the second cannot fit under.
TEST(WorkerCli, ACheckpointThatCannotBeWrittenFailsTheRunAndKeepsTheLastOne) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_EQ(Worker("init-model --config " + DebugConfig() + " --out " + dir + "/model").exit_code, 0);
  const std::string job = WriteJob(dir, dir + "/model", WriteData(dir), dir + "/out");
  std::string text = *ReadFileToString(job);
  ASSERT_NE(text.find("\"max_steps\": 3"), std::string::npos);
  text.replace(text.find("\"max_steps\": 3"), 14, "\"max_steps\": 4");
  ASSERT_TRUE(WriteFileAtomically(job, text).ok());
  // Ends right after checkpoint-2 (as a SIGKILL would).
  RunResult first =
      testing::RunCapture("FOAK_TEST_EXIT_AFTER_CHECKPOINT=2 " + std::string(FOAK_WORKER_BIN) +
                          " train --job " + job);
  ASSERT_EQ(first.exit_code, 137) << first.err;
  const std::string ckpt = dir + "/out/checkpoint-2";
  ASSERT_TRUE(PathExists(ckpt + "/model.safetensors"));
  const std::string weights = *ReadFileToString(ckpt + "/model.safetensors");
  ASSERT_GT(weights.size(), 300u * 1024) << "the limit below must be smaller than the weights";
  const std::string state = *ReadFileToString(ckpt + "/trainer_state.json");

  // Resumed under a 256-block file-size limit (128 KiB in dash, 256 KiB in
  // bash): checkpoint-4's weights cannot be written.
  RunResult limited = testing::RunCapture("ulimit -f 256; exec " + std::string(FOAK_WORKER_BIN) +
                                          " train --job " + job + " --resume latest");
  EXPECT_EQ(limited.exit_code, 1) << limited.err;
  EXPECT_NE(limited.err.find("saving checkpoint-4 in " + dir + "/out failed and its partial "
                             "folder was removed; the newest complete checkpoint, " +
                             ckpt + ", is intact"),
            std::string::npos)
      << limited.err;
  EXPECT_NE(limited.err.find("a file-size limit was reached"), std::string::npos) << limited.err;
  EXPECT_EQ(*ReadFileToString(ckpt + "/model.safetensors"), weights);
  EXPECT_EQ(*ReadFileToString(ckpt + "/trainer_state.json"), state);
  auto names = ListDir(dir + "/out");
  ASSERT_TRUE(names.ok());
  for (const std::string& name : *names) {
    EXPECT_EQ(name.find("checkpoint-4"), std::string::npos) << name << " was left behind";
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << name << " was left behind";
  }
  EXPECT_FALSE(PathExists(dir + "/out/final"));

  // Without the limit the run resumes from checkpoint-2 and ends.
  RunResult resumed = Worker("train --job " + job + " --resume latest");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming from " + ckpt), std::string::npos) << resumed.err;
  EXPECT_TRUE(PathExists(dir + "/out/final/model.safetensors"));
  EXPECT_EQ(ReadMetrics(dir + "/out/metrics.jsonl").size(), 4u);
}

TEST(WorkerCli, AnOutputFolderThatCannotBeCreatedFailsBeforeTraining) {
  const TempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_EQ(Worker("init-model --config " + DebugConfig() + " --out " + dir + "/model").exit_code, 0);
  ASSERT_TRUE(WriteFileAtomically(dir + "/a-file", "x").ok());
  RunResult r = Worker("train --job " + WriteJob(dir, dir + "/model", WriteData(dir),
                                                  dir + "/a-file/out"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("output_dir '" + dir + "/a-file/out' cannot be created"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("choose a folder this worker can write"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("step 1"), std::string::npos) << "no step ran: " << r.err;
}

TEST(WorkerCli, UsageErrorsExit2AndHelpExits0) {
  RunResult none = Worker("");
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("Usage: foak-worker"), std::string::npos);
  RunResult missing = Worker("train");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--job is required"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("Usage: foak-worker train"), std::string::npos) << missing.err;
  EXPECT_EQ(Worker("train --jobs x").exit_code, 2);
  EXPECT_EQ(Worker("fly").exit_code, 2);
  for (const char* command : {"train", "init-model", "forward", "generate"}) {
    RunResult help = Worker(std::string(command) + " --help");
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_NE(help.out.find(std::string("Usage: foak-worker ") + command), std::string::npos);
  }
  RunResult no_job = Worker("train --job /nonexistent/job.json");
  EXPECT_EQ(no_job.exit_code, 1);
  EXPECT_NE(no_job.err.find("/nonexistent/job.json"), std::string::npos) << no_job.err;
}

}  // namespace
}  // namespace foak
