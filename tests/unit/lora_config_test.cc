// LoraConfig validation and adapter_config.json, checked against the files
// PEFT 0.21 itself wrote (tests/testdata/peft/*/adapter_config.json, made by
// scripts/make_peft_fixtures.py).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "worker/lora/lora_config.h"

namespace foak {
namespace {

const std::string kPeftDir = FOAK_TESTDATA_DIR "/peft";

std::string ErrorOf(const LoraConfig& c) { return std::string(ValidateLoraConfig(c).message()); }

nlohmann::json PeftConfig(const std::string& name) {
  absl::StatusOr<std::string> text = ReadFileToString(kPeftDir + "/" + name + "/adapter_config.json");
  EXPECT_TRUE(text.ok()) << text.status();
  return nlohmann::json::parse(text.value_or("{}"));
}

TEST(LoraConfigTest, DefaultsAreValidAndScaleFollowsPeft) {
  LoraConfig c;
  EXPECT_TRUE(ValidateLoraConfig(c).ok());
  c.r = 16;
  c.alpha = 32;
  EXPECT_DOUBLE_EQ(c.Scale(), 2.0);
  c.use_rslora = true;
  EXPECT_DOUBLE_EQ(c.Scale(), 8.0);  // 32 / sqrt(16)
}

TEST(LoraConfigTest, RejectsBadNumbersNamingTheField) {
  LoraConfig c;
  c.r = 0;
  EXPECT_NE(ErrorOf(c).find("lora.r is 0"), std::string::npos) << ErrorOf(c);
  c = LoraConfig();
  c.alpha = 0;
  EXPECT_NE(ErrorOf(c).find("lora.alpha"), std::string::npos);
  c = LoraConfig();
  c.dropout = 1.0;
  EXPECT_NE(ErrorOf(c).find("lora.dropout"), std::string::npos);
  c.dropout = -0.1;
  EXPECT_FALSE(ValidateLoraConfig(c).ok());
}

TEST(LoraConfigTest, UnknownModuleListsTheValidNames) {
  LoraConfig c;
  c.target_modules = {"q_proj", "qkv_proj"};
  const std::string error = ErrorOf(c);
  EXPECT_NE(error.find("\"qkv_proj\""), std::string::npos) << error;
  for (const std::string& name : LoraTargetModuleNames()) {
    EXPECT_NE(error.find(name), std::string::npos) << name << " missing from: " << error;
  }
  EXPECT_NE(error.find("all-linear"), std::string::npos);
  c.target_modules = {"lm_head"};
  EXPECT_NE(ErrorOf(c).find("output layer"), std::string::npos) << ErrorOf(c);
  c.target_modules = {"all-linear", "q_proj"};
  EXPECT_NE(ErrorOf(c).find("mixes"), std::string::npos);
  c.target_modules = {"v_proj", "v_proj"};
  EXPECT_NE(ErrorOf(c).find("twice"), std::string::npos);
  c.target_modules = {};
  EXPECT_NE(ErrorOf(c).find("empty"), std::string::npos);
}

TEST(LoraConfigTest, ResolvesTargetsInDecoderOrder) {
  LoraConfig c;
  absl::StatusOr<std::vector<std::string>> all = ResolveLoraTargets(c);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                             "up_proj", "down_proj"}));
  c.target_modules = {"down_proj", "q_proj"};
  EXPECT_EQ(ResolveLoraTargets(c).value(), (std::vector<std::string>{"q_proj", "down_proj"}));
}

TEST(LoraConfigTest, ParsesTheConfigsPeftWrote) {
  for (const std::string name : {"llama3_gqa", "qwen2_bias", "llama3_gqa_rslora"}) {
    const std::string path = kPeftDir + "/" + name + "/adapter_config.json";
    absl::StatusOr<LoraConfig> c = ParseLoraAdapterConfig(PeftConfig(name).dump(), path);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->r, 4);
    EXPECT_DOUBLE_EQ(c->alpha, 8.0);
    EXPECT_DOUBLE_EQ(c->dropout, 0.0);
    const std::vector<std::string> targets = ResolveLoraTargets(*c).value();
    if (name == "llama3_gqa_rslora") {
      EXPECT_TRUE(c->use_rslora);
      EXPECT_EQ(targets, (std::vector<std::string>{"q_proj", "v_proj", "down_proj"}));
    } else {
      EXPECT_FALSE(c->use_rslora);
      EXPECT_EQ(targets.size(), 7u);
    }
  }
}

TEST(LoraConfigTest, WritesOnlyKeysPeftKnowsAndRoundTrips) {
  LoraConfig c;
  c.r = 16;
  c.alpha = 32;
  c.dropout = 0.05;
  c.target_modules = {"v_proj", "q_proj"};
  c.use_rslora = true;
  absl::StatusOr<std::string> text = LoraAdapterConfigJson(c, "meta-llama/Llama-3.2-1B");
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::json mine = nlohmann::json::parse(*text);
  const nlohmann::json peft = PeftConfig("llama3_gqa");
  for (const auto& item : mine.items()) {
    EXPECT_TRUE(peft.contains(item.key())) << "PEFT 0.21 writes no key " << item.key();
  }
  // The keys that decide what PEFT builds, and their plain-LoRA values.
  for (const char* key : {"peft_type", "task_type", "r", "lora_alpha", "lora_dropout",
                          "target_modules", "bias", "fan_in_fan_out", "use_rslora", "use_dora",
                          "base_model_name_or_path", "inference_mode", "modules_to_save",
                          "rank_pattern", "alpha_pattern", "layers_to_transform"}) {
    ASSERT_TRUE(mine.contains(key)) << key;
    if (std::string(key) != "r" && std::string(key) != "lora_alpha" &&
        std::string(key) != "lora_dropout" && std::string(key) != "target_modules" &&
        std::string(key) != "use_rslora" && std::string(key) != "base_model_name_or_path") {
      EXPECT_EQ(mine[key], peft[key]) << key;
    }
  }
  EXPECT_EQ(mine["lora_alpha"], 32);
  EXPECT_TRUE(mine["lora_alpha"].is_number_integer());  // PEFT types it int
  EXPECT_EQ(mine["target_modules"], nlohmann::json({"q_proj", "v_proj"}));
  EXPECT_EQ(mine["base_model_name_or_path"], "meta-llama/Llama-3.2-1B");

  absl::StatusOr<LoraConfig> back = ParseLoraAdapterConfig(*text, "mine.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->r, 16);
  EXPECT_DOUBLE_EQ(back->alpha, 32);
  EXPECT_DOUBLE_EQ(back->dropout, 0.05);
  EXPECT_TRUE(back->use_rslora);
  EXPECT_EQ(back->target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST(LoraConfigTest, RejectsWhatFoakDoesNotImplement) {
  const nlohmann::json base = PeftConfig("llama3_gqa");
  auto error_with = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json j = base;
    if (value.is_discarded()) {
      j.erase(key);
    } else {
      j[key] = value;
    }
    absl::StatusOr<LoraConfig> c = ParseLoraAdapterConfig(j.dump(), "x/adapter_config.json");
    return c.ok() ? std::string("ok") : std::string(c.status().message());
  };
  EXPECT_EQ(error_with("peft_version", "9.9"), "ok");  // unknown keys are ignored
  const std::string dora = error_with("use_dora", true);
  EXPECT_NE(dora.find("x/adapter_config.json"), std::string::npos) << dora;
  EXPECT_NE(dora.find("\"use_dora\""), std::string::npos) << dora;
  EXPECT_NE(error_with("bias", "all").find("\"bias\""), std::string::npos);
  EXPECT_NE(error_with("peft_type", "IA3").find("peft_type"), std::string::npos);
  EXPECT_NE(error_with("modules_to_save", {"lm_head"}).find("modules_to_save"), std::string::npos);
  EXPECT_NE(error_with("rank_pattern", {{"q_proj", 8}}).find("rank_pattern"), std::string::npos);
  EXPECT_NE(error_with("target_modules", ".*proj").find("regular expression"), std::string::npos);
  EXPECT_NE(error_with("target_modules", {"q_proj", "lm_head"}).find("lm_head"),
            std::string::npos);
  EXPECT_NE(error_with("r", nlohmann::json::value_t::discarded).find("\"r\" is missing"),
            std::string::npos);
  EXPECT_NE(error_with("r", 0).find("lora.r is 0"), std::string::npos);
  EXPECT_EQ(error_with("target_modules", "all-linear"), "ok");
  EXPECT_FALSE(ParseLoraAdapterConfig("{not json", "y.json").ok());
}

}  // namespace
}  // namespace foak
