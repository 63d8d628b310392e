// Test helpers for worker/data: a fake Tokenizer (one id per byte plus a few
// special tokens, so expected ids can be written by hand) and a temp folder.
#ifndef FOAK_TESTS_UNIT_DATA_TEST_UTIL_H_
#define FOAK_TESTS_UNIT_DATA_TEST_UTIL_H_

#include <stdlib.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "worker/data/example.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {
namespace testing_data {

// Ids 0-255 are bytes; 256 + i is kSpecials[i].
inline const std::vector<std::string>& Specials() {
  static const auto* specials = new std::vector<std::string>{"<s>",
                                                             "</s>",
                                                             "<|begin_of_text|>",
                                                             "<|eot_id|>",
                                                             "<|start_header_id|>",
                                                             "<|end_header_id|>",
                                                             "<|im_start|>",
                                                             "<|im_end|>",
                                                             "<|start_of_role|>",
                                                             "<|end_of_role|>",
                                                             "<|end_of_text|>",
                                                             "<pad>"};
  return *specials;
}

class FakeTokenizer : public Tokenizer {
 public:
  // BOS/EOS given by their strings ("" = none).
  FakeTokenizer(const std::string& bos, const std::string& eos, bool add_bos, bool add_eos) {
    if (!bos.empty()) special_.bos_id = TokenToId(bos);
    if (!eos.empty()) special_.eos_id = TokenToId(eos);
    special_.pad_id = TokenToId("<pad>");
    special_.add_bos = add_bos;
    special_.add_eos = add_eos;
  }

  std::vector<int64_t> Encode(std::string_view text, bool parse_special) const override {
    std::vector<int64_t> ids;
    size_t i = 0;
    while (i < text.size()) {
      bool matched = false;
      if (parse_special) {
        for (size_t k = 0; k < Specials().size(); ++k) {
          const std::string& s = Specials()[k];
          if (text.substr(i, s.size()) == s) {
            ids.push_back(256 + static_cast<int64_t>(k));
            i += s.size();
            matched = true;
            break;
          }
        }
      }
      if (!matched) ids.push_back(static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id < 256) {
        out.push_back(static_cast<char>(id));
      } else if (!skip_special) {
        out += Specials()[static_cast<size_t>(id - 256)];
      }
    }
    return out;
  }
  int64_t vocab_size() const override { return 256 + static_cast<int64_t>(Specials().size()); }
  std::optional<int64_t> TokenToId(std::string_view token) const override {
    for (size_t k = 0; k < Specials().size(); ++k) {
      if (Specials()[k] == token) return 256 + static_cast<int64_t>(k);
    }
    return std::nullopt;
  }
  bool IsSpecial(int64_t id) const override { return id >= 256; }
};

// The text of the trained tokens (labels != -100), runs separated by "|".
inline std::string TrainedText(const Tokenizer& tok, const Example& e) {
  std::string out;
  std::vector<int64_t> run;
  for (size_t t = 0; t <= e.labels.size(); ++t) {
    if (t < e.labels.size() && e.labels[t] != kIgnoreIndex) {
      EXPECT_EQ(e.labels[t], e.input_ids[t]) << "a label must equal its input id";
      run.push_back(e.labels[t]);
    } else if (!run.empty()) {
      if (!out.empty()) out += "|";
      out += tok.Decode(run, false);
      run.clear();
    }
  }
  return out;
}

// A temp folder for a test's files, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/foak_data_test_XXXXXX";
    const char* dir = mkdtemp(tmpl);
    EXPECT_NE(dir, nullptr);
    dir_ = dir == nullptr ? "/tmp" : dir;
  }
  ~TempDir() { RemoveTree(dir_).IgnoreError(); }
  std::string Write(const std::string& name, const std::string& contents) {
    std::string path = JoinPath(dir_, name);
    EXPECT_TRUE(WriteFileAtomically(path, contents).ok());
    return path;
  }

 private:
  std::string dir_;
};

inline bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

}  // namespace testing_data
}  // namespace foak

#endif  // FOAK_TESTS_UNIT_DATA_TEST_UTIL_H_
