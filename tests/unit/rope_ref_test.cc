// The rope CPU reference is the oracle for the CUDA kernel, so it is itself
// checked at odd shapes (GQA, a head_dim whose half is odd, packed and large
// positions): forward against an independent formula (the pair (x1, x2) as
// the complex number x1 + i x2 multiplied by e^{i angle}), backward against
// the adjoint identity <R x, dy> = <x, R^T dy> (rope is linear, so this is
// what a finite-difference check would test, without its step error), and
// forward-then-backward returning the input (R is orthogonal).
#include <cmath>
#include <complex>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/rope/rope.h"

namespace foak {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// B=2, T=7, 3 q heads, 1 kv head, d=10 (half 5).
RopeParams OddParams() { return RopeParams{2, 7, 3, 1, 10, ScalarKind::kF32}; }

// Row 0 restarts at 0 mid-row (packed sequences); row 1 has large positions.
std::vector<int64_t> Positions(const RopeParams& p) {
  std::vector<int64_t> pos(p.batch * p.seq);
  for (int64_t t = 0; t < p.seq; ++t) {
    pos[t] = t < 4 ? t : t - 4;
    if (p.batch > 1) pos[p.seq + t] = 100000 - 3 * t;
  }
  return pos;
}

std::vector<float> InvFreq(int64_t head_dim) {
  std::vector<float> f(head_dim / 2);
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = static_cast<float>(std::pow(10000.0, -2.0 * static_cast<double>(i) / head_dim));
  }
  return f;
}

// Rotation of every (x[i], x[i + h]) pair as a complex product, per token.
std::vector<double> ComplexRotation(const RopeParams& p, int64_t heads, const std::vector<float>& x,
                                    const std::vector<int64_t>& pos,
                                    const std::vector<float>& inv_freq) {
  const int64_t d = p.head_dim, half = d / 2;
  std::vector<double> y(x.size());
  for (int64_t n = 0; n < p.batch * p.seq; ++n) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t row = (n * heads + h) * d;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(pos[n]) * inv_freq[i];  // the fp32 product
        const std::complex<double> z(x[row + i], x[row + half + i]);
        const std::complex<double> r = z * std::polar(1.0, static_cast<double>(angle));
        y[row + i] = r.real();
        y[row + half + i] = r.imag();
      }
    }
  }
  return y;
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

TEST(RopeRef, ForwardMatchesComplexRotation) {
  const RopeParams p = OddParams();
  const auto pos = Positions(p);
  const auto inv_freq = InvFreq(p.head_dim);
  auto q = Random(p.batch * p.seq * p.q_heads * p.head_dim, 1);
  auto k = Random(p.batch * p.seq * p.kv_heads * p.head_dim, 2);
  const auto q_want = ComplexRotation(p, p.q_heads, q, pos, inv_freq);
  const auto k_want = ComplexRotation(p, p.kv_heads, k, pos, inv_freq);
  RopeForwardRef(p, q.data(), k.data(), pos.data(), inv_freq.data());
  // fp32 cos/sin and the fp32 result: a few 1e-7 of |x| ~ 1.
  for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(q[i], q_want[i], 1e-6) << "q[" << i << "]";
  for (size_t i = 0; i < k.size(); ++i) EXPECT_NEAR(k[i], k_want[i], 1e-6) << "k[" << i << "]";
}

TEST(RopeRef, BackwardIsTheAdjoint) {
  const RopeParams p = OddParams();
  const auto pos = Positions(p);
  const auto inv_freq = InvFreq(p.head_dim);
  const auto q = Random(p.batch * p.seq * p.q_heads * p.head_dim, 3);
  const auto k = Random(p.batch * p.seq * p.kv_heads * p.head_dim, 4);
  const auto dy_q = Random(q.size(), 5);
  const auto dy_k = Random(k.size(), 6);
  auto rq = q, rk = k;
  RopeForwardRef(p, rq.data(), rk.data(), pos.data(), inv_freq.data());
  std::vector<float> dq(q.size()), dk(k.size());
  RopeBackwardRef(p, dy_q.data(), dy_k.data(), pos.data(), inv_freq.data(), dq.data(), dk.data());
  // Sums of ~300 products of unit normals: |sum| ~ 20, fp32 rounding ~1e-5.
  EXPECT_NEAR(Dot(rq, dy_q), Dot(q, dq), 1e-4);
  EXPECT_NEAR(Dot(rk, dy_k), Dot(k, dk), 1e-4);
}

TEST(RopeRef, BackwardUndoesForwardAndMayAlias) {
  const RopeParams p = OddParams();
  const auto pos = Positions(p);
  const auto inv_freq = InvFreq(p.head_dim);
  const auto q = Random(p.batch * p.seq * p.q_heads * p.head_dim, 7);
  const auto k = Random(p.batch * p.seq * p.kv_heads * p.head_dim, 8);
  auto rq = q, rk = k;
  RopeForwardRef(p, rq.data(), rk.data(), pos.data(), inv_freq.data());
  std::vector<float> bq(q.size()), bk(k.size());
  RopeBackwardRef(p, rq.data(), rk.data(), pos.data(), inv_freq.data(), bq.data(), bk.data());
  // In place (outputs aliasing the inputs) gives the same bits.
  RopeBackwardRef(p, rq.data(), rk.data(), pos.data(), inv_freq.data(), rq.data(), rk.data());
  EXPECT_EQ(bq, rq);
  EXPECT_EQ(bk, rk);
  for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(bq[i], q[i], 1e-6) << "q[" << i << "]";
  for (size_t i = 0; i < k.size(); ++i) EXPECT_NEAR(bk[i], k[i], 1e-6) << "k[" << i << "]";
}

TEST(RopeRef, ZeroHeadsSkipATensor) {
  RopeParams p = OddParams();
  const auto pos = Positions(p);
  const auto inv_freq = InvFreq(p.head_dim);
  auto q = Random(p.batch * p.seq * p.q_heads * p.head_dim, 9);
  auto q_both = q;
  auto k = Random(p.batch * p.seq * p.kv_heads * p.head_dim, 10);
  RopeForwardRef(p, q_both.data(), k.data(), pos.data(), inv_freq.data());
  p.kv_heads = 0;
  RopeForwardRef(p, q.data(), nullptr, pos.data(), inv_freq.data());
  EXPECT_EQ(q, q_both);
}

}  // namespace
}  // namespace foak
