// The worker's JSON job file and foak.v1.JobSpec describe jobs with the same
// field names: every committed example job parses as a JobSpec with protobuf's
// JSON mapping (examples/qlora_job.json with its quantization object too), and
// a misspelt field is rejected by name.
#include <string>

#include "common/file_util.h"
#include "foak/v1/job.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace foak {
namespace {

TEST(ProtoJobSpec, DemoJobParses) {
  auto text = ReadFileToString(std::string(FOAK_SOURCE_DIR) + "/examples/demo_job.json");
  ASSERT_TRUE(text.ok()) << text.status();
  foak::v1::JobSpec spec;
  auto st = google::protobuf::util::JsonStringToMessage(*text, &spec);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(spec.model().empty());
  EXPECT_FALSE(spec.dataset().train().empty());
  EXPECT_TRUE(spec.hyperparameters().has_learning_rate());
  EXPECT_GT(spec.hyperparameters().learning_rate(), 0.0);
}

TEST(ProtoJobSpec, LoraJobAndEveryJobFieldParse) {
  auto text = ReadFileToString(std::string(FOAK_SOURCE_DIR) + "/examples/lora_job.json");
  ASSERT_TRUE(text.ok()) << text.status();
  foak::v1::JobSpec spec;
  auto st = google::protobuf::util::JsonStringToMessage(*text, &spec);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(spec.method(), "lora");
  EXPECT_EQ(spec.lora().r(), 8);
  EXPECT_EQ(spec.lora().target_modules().string_value(), "all-linear");
  EXPECT_TRUE(spec.save_merged());

  // Every field of the worker's job file (worker/train/job.h) has its proto twin.
  foak::v1::JobSpec all;
  st = google::protobuf::util::JsonStringToMessage(R"({"name": "n", "model": "m",
      "dataset": {"train": "t", "validation": "v", "validation_split": 0.1, "format": "chat",
                  "chat_template": {"user": {"prefix": "U: "}}, "train_on_prompt": true,
                  "instructions_as_chat": true, "skip_bad_lines": true,
                  "shuffle_buffer_size": 100},
      "method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1,
                                 "target_modules": ["q_proj"], "use_rslora": true},
      "save_merged": true, "output_dir": "o", "device": "cpu", "kernels": ["foak", "fused_linear_cross_entropy"],
      "resume_from_checkpoint": true, "resume_ignore_mismatch": false,
      "hyperparameters": {"eval_steps": 5, "eval_batch_size": 4, "save_total_limit": 2}})",
                                                   &all);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(all.dataset().chat_template().struct_value().fields().at("user").struct_value()
                .fields().at("prefix").string_value(),
            "U: ");
  EXPECT_EQ(all.lora().target_modules().list_value().values(0).string_value(), "q_proj");
  EXPECT_TRUE(all.resume_from_checkpoint().bool_value());
  EXPECT_EQ(all.hyperparameters().eval_steps(), 5);
  ASSERT_EQ(all.kernels_size(), 2);
  EXPECT_EQ(all.kernels(1), "fused_linear_cross_entropy");
}

TEST(ProtoJobSpec, QloraJobParsesWithItsQuantization) {
  auto text = ReadFileToString(std::string(FOAK_SOURCE_DIR) + "/examples/qlora_job.json");
  ASSERT_TRUE(text.ok()) << text.status();
  foak::v1::JobSpec spec;
  auto st = google::protobuf::util::JsonStringToMessage(*text, &spec);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(spec.method(), "qlora");
  EXPECT_TRUE(spec.has_lora());
  EXPECT_EQ(spec.quantization().type(), "nf4");
  ASSERT_TRUE(spec.quantization().has_double_quant());
  EXPECT_TRUE(spec.quantization().double_quant());

  // Unset double_quant stays unset (the worker's default applies); a
  // misspelt key is refused by name.
  foak::v1::JobSpec bare;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"method": "qlora", "quantization": {"type": "nf4"}})", &bare)
                  .ok());
  EXPECT_FALSE(bare.quantization().has_double_quant());
  st = google::protobuf::util::JsonStringToMessage(
      R"({"method": "qlora", "quantization": {"double_quantization": true}})", &bare);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("double_quantization"), std::string::npos) << st.ToString();
}

TEST(ProtoJobSpec, UnknownFieldIsRejectedByName) {
  foak::v1::JobSpec spec;
  auto st = google::protobuf::util::JsonStringToMessage(
      R"({"model": "m", "hyperparameters": {"learning_rat": 0.1}})", &spec);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("learning_rat"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace foak
