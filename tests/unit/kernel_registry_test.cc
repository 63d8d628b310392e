// Kernel names a job may list, the two group names, and the error for an
// unknown name.
#include "gtest/gtest.h"
#include "kernels/registry.h"

namespace foak {
namespace {

TEST(KernelRegistry, NamesGroupsAndRepeats) {
  auto none = ParseKernelSet({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(KernelSetString(*none), "none");

  auto foak = ParseKernelSet({"foak"});
  ASSERT_TRUE(foak.ok());
  EXPECT_EQ(foak->Names(), (std::vector<std::string>{"rms_norm", "rope", "swiglu", "cross_entropy"}));
  EXPECT_FALSE(foak->fused_linear_cross_entropy);

  auto all = ParseKernelSet({"all"});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->Names().size(), RegisteredKernels().size());

  auto some = ParseKernelSet({"swiglu", "fused_linear_cross_entropy", "swiglu"});
  ASSERT_TRUE(some.ok());
  EXPECT_EQ(some->Names(), (std::vector<std::string>{"swiglu", "fused_linear_cross_entropy"}));
  EXPECT_EQ(KernelSetString(*some), "swiglu, fused_linear_cross_entropy");
}

TEST(KernelRegistry, UnknownNameListsValidOnes) {
  auto bad = ParseKernelSet({"rms_norm", "flash_attention"});
  ASSERT_FALSE(bad.ok());
  const std::string msg(bad.status().message());
  EXPECT_NE(msg.find("'flash_attention'"), std::string::npos) << msg;
  for (const KernelInfo& k : RegisteredKernels()) {
    EXPECT_NE(msg.find(k.name), std::string::npos) << msg;
  }
  EXPECT_NE(msg.find("'all'"), std::string::npos) << msg;
}

TEST(KernelRegistry, LabelsNameTheSetsShortly) {
  EXPECT_EQ(KernelSetLabel(*ParseKernelSet({})), "none");
  EXPECT_EQ(KernelSetLabel(*ParseKernelSet({"foak"})), "foak");
  EXPECT_EQ(KernelSetLabel(*ParseKernelSet({"all"})), "all");
  EXPECT_TRUE(ParseKernelSet({"all"})->fused_lora);
  EXPECT_EQ(KernelSetLabel(*ParseKernelSet({"foak", "fused_lora"})), "foak+fused_lora");
  EXPECT_EQ(KernelSetLabel(*ParseKernelSet({"rope", "rms_norm"})), "rms_norm+rope");
}

}  // namespace
}  // namespace foak
