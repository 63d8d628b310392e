// The NF4 CPU reference is the oracle of the CUDA kernels, so it is checked on
// its own: the code table and thresholds, every code value round-tripping, the
// packing order, all-zero blocks, ties on a threshold, and -- bit for bit --
// the fixture that scripts/make_nf4_fixture.py computes from the format's
// description in pure Python (independently of this code), single and double
// quantised. Then the statistics: the relative RMS error on a fixed-seed 1M
// normal tensor against the script's own Monte Carlo estimate, and the small
// extra error of double quantisation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "kernels/nf4/nf4.h"

namespace foak {
namespace {

using nlohmann::json;

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

const json& Fixture() {
  static const json* fixture = [] {
    const std::string path = std::string(FOAK_TESTDATA_DIR) + "/nf4/fixture.json";
    std::ifstream in(path);
    if (!in) {
      ADD_FAILURE() << "cannot open " << path << " (regenerate it with "
                    << "python3 scripts/make_nf4_fixture.py)";
      return new json(json::object());
    }
    return new json(json::parse(in));
  }();
  return *fixture;
}

std::vector<float> Floats(const json& j) {
  std::vector<float> v;
  for (const auto& x : j) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}

std::vector<uint8_t> FromHex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

// FNV-1a (64-bit) over the little-endian fp32 bytes, as the script computes it.
std::string Fnv1a(const std::vector<float>& values) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (float v : values) {
    const uint32_t b = Bits(v);
    for (int k = 0; k < 4; ++k) {
      h ^= (b >> (8 * k)) & 0xFF;
      h *= 0x100000001B3ull;
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Bitwise equality of two float vectors, reporting the first difference.
void ExpectSameBits(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(Bits(got[i]), Bits(want[i]))
        << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
  }
}

struct Quantized {
  std::vector<uint8_t> packed;
  std::vector<float> absmax;
  std::vector<float> dequant;
  // Double quantisation.
  std::vector<uint8_t> absmax_q;
  std::vector<float> absmax_scale;
  float absmax_offset = 0;
  std::vector<float> absmax_dequant;
  std::vector<float> dequant_dq;
};

Quantized QuantizeAll(const std::vector<float>& w) {
  Nf4Params p;
  p.numel = static_cast<int64_t>(w.size());
  const int64_t blocks = Nf4Blocks(p.numel);
  Quantized q;
  q.packed.resize(p.numel / 2);
  q.absmax.resize(blocks);
  Nf4QuantizeRef(p, w.data(), q.packed.data(), q.absmax.data());
  q.dequant.resize(p.numel);
  Nf4Scales single;
  single.absmax = q.absmax.data();
  Nf4DequantizeRef(p, q.packed.data(), single, q.dequant.data());

  q.absmax_q.resize(blocks);
  q.absmax_scale.resize(Nf4Groups(blocks));
  Nf4DoubleQuantizeRef(blocks, q.absmax.data(), q.absmax_q.data(), q.absmax_scale.data(),
                       &q.absmax_offset);
  q.absmax_dequant.resize(blocks);
  Nf4DequantizeAbsmaxRef(blocks, q.absmax_q.data(), q.absmax_scale.data(), q.absmax_offset,
                         q.absmax_dequant.data());
  Nf4Scales dq;
  dq.absmax_q = q.absmax_q.data();
  dq.absmax_scale = q.absmax_scale.data();
  dq.absmax_offset = &q.absmax_offset;
  q.dequant_dq.resize(p.numel);
  Nf4DequantizeRef(p, q.packed.data(), dq, q.dequant_dq.data());
  return q;
}

std::vector<int> Codes(const std::vector<uint8_t>& packed) {
  std::vector<int> codes;
  for (uint8_t b : packed) {
    codes.push_back(b >> 4);
    codes.push_back(b & 15);
  }
  return codes;
}

TEST(Nf4Ref, TablesMatchThePaperAndBitsandbytes) {
  const json& f = Fixture();
  ASSERT_EQ(f["codes"].size(), 16u);
  ASSERT_EQ(f["thresholds"].size(), 15u);
  const std::vector<float> codes = Floats(f["codes"]), thresholds = Floats(f["thresholds"]);
  for (int k = 0; k < 16; ++k) EXPECT_EQ(Bits(Nf4CodeValue(k)), Bits(codes[k])) << "code " << k;
  for (int k = 0; k < 15; ++k) {
    EXPECT_EQ(Bits(Nf4Threshold(k)), Bits(thresholds[k])) << "threshold " << k;
  }
  EXPECT_EQ(f["block"].get<int64_t>(), kNf4BlockSize);
  EXPECT_EQ(f["group"].get<int64_t>(), kNf4GroupSize);
}

TEST(Nf4Ref, EveryCodeValueRoundTrips) {
  // Block scales: exactly 1, an ordinary value, a subnormal and a huge one.
  for (float a : {1.0f, 0.3f, 3e-39f, 1e30f, 448.0f}) {
    std::vector<float> w(2 * kNf4BlockSize);
    for (size_t i = 0; i < w.size(); ++i) {
      w[i] = Nf4CodeValue(static_cast<int>((7 * i + i / 16) % 16)) * a;
    }
    const Quantized q = QuantizeAll(w);
    EXPECT_EQ(Bits(q.absmax[0]), Bits(a)) << "absmax " << a;
    const std::vector<int> codes = Codes(q.packed);
    for (size_t i = 0; i < w.size(); ++i) {
      EXPECT_EQ(codes[i], static_cast<int>((7 * i + i / 16) % 16)) << "a = " << a << ", i " << i;
    }
    ExpectSameBits(q.dequant, w, "round trip at absmax " + std::to_string(a));
  }
}

TEST(Nf4Ref, PackingHighNibbleFirst) {
  std::vector<float> w(kNf4BlockSize, 0.0f);
  w[0] = 1.0f;                     // code 15
  w[1] = -1.0f;                    // code 0
  w[2] = 0.0f;                     // code 7
  w[3] = 0.5626170039176941f;      // code 13
  w[4] = -0.09105003625154495f;    // code 6
  w[5] = 0.07958029955625534f;     // code 8
  const Quantized q = QuantizeAll(w);
  EXPECT_EQ(q.packed[0], 0xF0);
  EXPECT_EQ(q.packed[1], 0x7D);
  EXPECT_EQ(q.packed[2], 0x68);
  for (size_t i = 3; i < q.packed.size(); ++i) EXPECT_EQ(q.packed[i], 0x77) << i;
}

TEST(Nf4Ref, ZeroBlockGetsCodeSeven) {
  std::vector<float> w(3 * kNf4BlockSize, 0.5f);
  for (int i = 64; i < 128; ++i) w[i] = (i % 2) ? -0.0f : 0.0f;
  const Quantized q = QuantizeAll(w);
  EXPECT_EQ(Bits(q.absmax[1]), Bits(0.0f));
  for (int i = 32; i < 64; ++i) EXPECT_EQ(q.packed[i], 0x77) << i;
  for (int i = 64; i < 128; ++i) EXPECT_EQ(q.dequant[i], 0.0f) << i;
  // The neighbours are untouched: 0.5 / 0.5 = 1 -> code 15.
  EXPECT_EQ(q.packed[0], 0xFF);
  EXPECT_EQ(q.dequant[0], 0.5f);
}

TEST(Nf4Ref, ValueOnAThresholdTakesTheLowerCode) {
  for (int k = 0; k < 15; ++k) {
    const float t = Nf4Threshold(k);
    EXPECT_EQ(Nf4Encode(t), k) << "t_" << k;
    EXPECT_EQ(Nf4Encode(std::nextafter(t, 2.0f)), k + 1) << "just above t_" << k;
    EXPECT_EQ(Nf4Encode(std::nextafter(t, -2.0f)), k) << "just below t_" << k;
  }
  EXPECT_EQ(Nf4Encode(-0.0f), kNf4ZeroCode);
  EXPECT_EQ(Nf4Encode(-1.0f), 0);
  EXPECT_EQ(Nf4Encode(1.0f), 15);
}

// The script's fixture, bit for bit: codes, absmax, dequantised values, and
// every part of double quantisation.
void CheckAgainstFixture(const json& c, const std::vector<float>& w, bool full) {
  const Quantized q = QuantizeAll(w);
  const std::vector<uint8_t> packed = FromHex(c["packed_hex"].get<std::string>());
  ASSERT_EQ(q.packed.size(), packed.size());
  for (size_t i = 0; i < packed.size(); ++i) {
    ASSERT_EQ(q.packed[i], packed[i]) << "packed byte " << i << " (elements " << 2 * i << ", "
                                      << 2 * i + 1 << ": " << w[2 * i] << ", " << w[2 * i + 1]
                                      << ")";
  }
  ExpectSameBits(q.absmax, Floats(c["absmax"]), "absmax");
  EXPECT_EQ(Fnv1a(q.dequant), c["dequant_fnv1a"].get<std::string>());
  const json& d = c["double_quant"];
  EXPECT_EQ(Bits(q.absmax_offset), Bits(static_cast<float>(d["absmax_offset"].get<double>())))
      << "offset " << q.absmax_offset;
  ExpectSameBits(q.absmax_scale, Floats(d["absmax_scale"]), "absmax_scale");
  const auto absmax_q = d["absmax_q"].get<std::vector<int>>();
  ASSERT_EQ(q.absmax_q.size(), absmax_q.size());
  for (size_t j = 0; j < absmax_q.size(); ++j) {
    EXPECT_EQ(q.absmax_q[j], absmax_q[j]) << "absmax_q[" << j << "] of absmax " << q.absmax[j];
  }
  ExpectSameBits(q.absmax_dequant, Floats(d["absmax_dequant"]), "absmax_dequant");
  EXPECT_EQ(Fnv1a(q.dequant_dq), d["dequant_fnv1a"].get<std::string>());
  if (full) {
    ExpectSameBits(q.dequant, Floats(c["dequant"]), "dequant");
    ExpectSameBits(q.dequant_dq, Floats(d["dequant"]), "double-quant dequant");
  }
}

TEST(Nf4Ref, MatchesIndependentFixtureSmall) {
  const json& c = Fixture()["small"];
  const std::vector<float> w = Floats(c["weight"]);
  ASSERT_EQ(w.size(), 3u * 128u);
  CheckAgainstFixture(c, w, /*full=*/true);
}

// The script's large_weight(300): LCG integers times per-block powers of two.
std::vector<float> LargeWeight(int64_t blocks) {
  uint64_t state = 7;
  std::vector<float> w;
  for (int64_t i = 0; i < blocks * kNf4BlockSize; ++i) {
    const int64_t b = i / kNf4BlockSize, j = i % kNf4BlockSize;
    state = (state * 1103515245ull + 12345ull) % (1ull << 31);
    const int64_t v = static_cast<int64_t>((state >> 8) % 65536) - 32768;
    float x = std::ldexp(static_cast<float>(v * (16 + (7 * b) % 13)),
                         -static_cast<int>(17 + b % 5));
    if (b == 5 || (b == 9 && j > 0)) x = 0.0f;
    w.push_back(x);
  }
  return w;
}

TEST(Nf4Ref, MatchesIndependentFixtureLarge) {
  const json& c = Fixture()["large"];
  ASSERT_EQ(c["shape"][0].get<int64_t>(), 300);
  // Two double-quant groups, the second partial (44 blocks).
  CheckAgainstFixture(c, LargeWeight(300), /*full=*/false);
}

TEST(Nf4Ref, DoubleQuantOfEqualScalesIsExact) {
  // All scales equal: the offset is that scale, every centred value 0, the
  // group scale 0 and the stored byte 128; absmax' = offset exactly.
  std::vector<float> absmax(600, 0.8125f);
  std::vector<uint8_t> q(600);
  std::vector<float> scale(Nf4Groups(600));
  float offset = 0;
  Nf4DoubleQuantizeRef(600, absmax.data(), q.data(), scale.data(), &offset);
  EXPECT_EQ(offset, 0.8125f);
  ASSERT_EQ(scale.size(), 3u);
  for (float s : scale) EXPECT_EQ(s, 0.0f);
  for (uint8_t b : q) EXPECT_EQ(b, kNf4AbsmaxQZero);
  std::vector<float> back(600);
  Nf4DequantizeAbsmaxRef(600, q.data(), scale.data(), offset, back.data());
  for (float a : back) EXPECT_EQ(a, 0.8125f);
}

TEST(Nf4Ref, DoubleQuantCodesSpanTheRange) {
  // The largest centred scale of each group maps to +-127 exactly.
  std::vector<float> absmax(300);
  for (size_t j = 0; j < absmax.size(); ++j) absmax[j] = 1.0f + 0.01f * static_cast<float>(j % 97);
  std::vector<uint8_t> q(300);
  std::vector<float> scale(2);
  float offset = 0;
  Nf4DoubleQuantizeRef(300, absmax.data(), q.data(), scale.data(), &offset);
  for (int g = 0; g < 2; ++g) {
    int extreme = 0;
    for (int j = g * 256; j < std::min(300, (g + 1) * 256); ++j) {
      extreme = std::max(extreme, std::abs(static_cast<int>(q[j]) - kNf4AbsmaxQZero));
    }
    EXPECT_EQ(extreme, 127) << "group " << g;
  }
  std::vector<float> back(300);
  Nf4DequantizeAbsmaxRef(300, q.data(), scale.data(), offset, back.data());
  for (size_t j = 0; j < absmax.size(); ++j) {
    // Half a step of the group's scale, plus the roundings of q*s + offset.
    EXPECT_LE(std::fabs(back[j] - absmax[j]), 0.5f * scale[j / 256] + 4e-7f) << j;
  }
}

// NF4's error on N(0, 1) weights: the C++ reference on a fixed-seed 1M tensor
// against the script's own Monte Carlo estimate (1M other samples).
TEST(Nf4Ref, NormalErrorMatchesMonteCarlo) {
  const json& n = Fixture()["normal"];
  const double expected = n["rel_rms_error"].get<double>();
  const double expected_dq = n["rel_rms_error_double_quant"].get<double>();
  ASSERT_GT(expected, 0.05);
  ASSERT_LT(expected, 0.15);

  std::mt19937 gen(20240607);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(1 << 20);
  for (float& x : w) x = dist(gen);
  const Quantized q = QuantizeAll(w);
  double mean = 0, var = 0, err = 0, err_dq = 0;
  for (float x : w) mean += x;
  mean /= w.size();
  for (size_t i = 0; i < w.size(); ++i) {
    var += (w[i] - mean) * (w[i] - mean);
    err += double(w[i] - q.dequant[i]) * (w[i] - q.dequant[i]);
    err_dq += double(w[i] - q.dequant_dq[i]) * (w[i] - q.dequant_dq[i]);
  }
  var /= (w.size() - 1);
  const double rel = std::sqrt(err / w.size() / var);
  const double rel_dq = std::sqrt(err_dq / w.size() / var);
  std::printf("NF4 relative RMS error on N(0,1): %.5f (Monte Carlo %.5f), double quant %.5f "
              "(Monte Carlo %.5f)\n",
              rel, expected, rel_dq, expected_dq);
  EXPECT_NEAR(rel, expected, 0.03 * expected);
  EXPECT_NEAR(rel_dq, expected_dq, 0.03 * expected_dq);
  // Double quantisation costs little: under 1% more error.
  EXPECT_LE(rel_dq, 1.01 * rel);
}

}  // namespace
}  // namespace foak
