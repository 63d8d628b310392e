// SentencePiece inside a LibTorch process. Debian's libsentencepiece exports
// its own protobuf-lite; linked next to LibTorch's libprotobuf it crashed the
// process before main. foak loads it as a dlopen'd module instead
// (worker/tokenizer/sentencepiece_backend.h); this binary links LibTorch, runs
// a tensor op and then tokenizes through SentencePiece.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "worker/tokenizer/tokenizer.h"

namespace foak {
namespace {

TEST(TokenizerInTorchProcessTest, SentencePieceLoadsBesideLibTorch) {
  EXPECT_EQ(at::ones({2, 2}).sum().item<float>(), 4.0f);
#ifndef FOAK_HAVE_SENTENCEPIECE
  GTEST_SKIP() << "this build has no SentencePiece";
#else
  const std::string src = std::string(FOAK_TESTDATA_DIR) + "/tokenizers/sentencepiece";
  const std::string dir = ::testing::TempDir() + "/sp_torch_model";
  ASSERT_TRUE(MakeDirs(dir).ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/tokenizer.model", *ReadFileToString(src + "/sp.model")).ok());
  auto tok = LoadTokenizer(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const nlohmann::json expected = nlohmann::json::parse(*ReadFileToString(src + "/expected_py.json"));
  const auto& line = expected["lines"][1];
  EXPECT_EQ((*tok)->Encode(line["text"].get<std::string>(), false),
            line["ids"].get<std::vector<int64_t>>());
#endif
}

}  // namespace
}  // namespace foak
