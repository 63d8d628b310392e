// Tokenizer encoding throughput on one core: tokens/s and MB/s of Encode on a
// few MB of mixed text (the parity corpus of tests/testdata/tokenizers,
// repeated with deterministic perturbations so the BPE cache sees both hits
// and new words, as real data loading does).
//   foak_tokenizer_bench --tokenizer DIR [--tokenizer DIR ...] [--mb 4] [--reps 3]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "worker/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  double mb = 4;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--tokenizer") dirs.push_back(argv[i + 1]);
    else if (flag == "--mb") mb = std::atof(argv[i + 1]);
    else if (flag == "--reps") reps = std::atoi(argv[i + 1]);
    else { std::fprintf(stderr, "unknown flag %s\n", flag.c_str()); return 2; }
  }
  if (dirs.empty()) { std::fprintf(stderr, "give --tokenizer DIR\n"); return 2; }
  auto corpus_json = foak::ReadFileToString(dirs[0] + "/expected.json");
  if (!corpus_json.ok()) { std::fprintf(stderr, "%s\n", corpus_json.status().ToString().c_str()); return 1; }
  std::vector<std::string> lines;
  const nlohmann::json corpus = nlohmann::json::parse(*corpus_json);
  for (const auto& l : corpus["lines"]) lines.push_back(l["text"].get<std::string>());
  if (lines.empty()) { std::fprintf(stderr, "no lines in %s/expected.json\n", dirs[0].c_str()); return 1; }
  // Documents of ~2 KB: corpus lines joined, with a random number or word suffix.
  std::mt19937 rng(42);
  std::vector<std::string> docs;
  size_t total = 0;
  while (total < static_cast<size_t>(mb * 1e6)) {
    std::string doc;
    while (doc.size() < 2000) {
      doc += lines[rng() % lines.size()];
      doc += (rng() % 3 == 0) ? " item" + std::to_string(rng() % 100000) + "\n" : " ";
    }
    total += doc.size();
    docs.push_back(std::move(doc));
  }
  for (const std::string& dir : dirs) {
    auto tok = foak::LoadTokenizer(dir);
    if (!tok.ok()) { std::fprintf(stderr, "%s\n", tok.status().ToString().c_str()); return 1; }
    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < reps; ++r) {
      tokens = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (const std::string& d : docs) tokens += (*tok)->Encode(d).size();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("%-40s %.2f MB  %zu tokens  %.3f s  %.2f M tokens/s  %.2f MB/s (best of %d)\n",
                dir.c_str(), total / 1e6, tokens, best, tokens / best / 1e6, total / best / 1e6, reps);
  }
  return 0;
}
