// The swiglu CPU reference is the oracle for the CUDA kernel, so it is itself
// checked: forward against the formula in double precision, backward against
// central finite differences of a scalar objective, at an odd size, and both
// where sigmoid saturates (|g| up to 1e30), which must give no NaN or inf.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/swiglu/swiglu.h"

namespace foak {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * dist(gen);
  return v;
}

double Silu(double g) { return g / (1.0 + std::exp(-g)); }

// objective = sum(y * c) for fixed random c, so d objective / dy = c; y comes
// from the reference forward, so this checks forward and backward agree.
double Objective(const SwiGluParams& p, const std::vector<float>& g, const std::vector<float>& u,
                 const std::vector<float>& c) {
  std::vector<float> y(g.size());
  SwiGluForwardRef(p, g.data(), u.data(), y.data());
  double total = 0.0;
  for (size_t i = 0; i < y.size(); ++i) total += double(c[i]) * y[i];
  return total;
}

TEST(SwiGluRef, ForwardMatchesFormula) {
  SwiGluParams p{1031, ScalarKind::kF32};
  auto g = Random(p.numel, 1, 3.0f);
  auto u = Random(p.numel, 2);
  std::vector<float> y(p.numel);
  SwiGluForwardRef(p, g.data(), u.data(), y.data());
  for (int64_t i = 0; i < p.numel; ++i) {
    const double want = Silu(g[i]) * u[i];
    EXPECT_NEAR(y[i], want, 1e-6 * std::max(1.0, std::fabs(want))) << "y[" << i << "]";
  }
}

TEST(SwiGluRef, BackwardMatchesFiniteDifferences) {
  SwiGluParams p{517, ScalarKind::kF32};
  auto g = Random(p.numel, 3, 3.0f);
  auto u = Random(p.numel, 4);
  auto c = Random(p.numel, 5);
  std::vector<float> dg(p.numel), du(p.numel);
  SwiGluBackwardRef(p, g.data(), u.data(), c.data(), dg.data(), du.data());
  const float step = 1e-2f;
  for (int64_t i = 0; i < p.numel; i += 3) {
    auto gp = g, gm = g;
    gp[i] += step;
    gm[i] -= step;
    double fd = (Objective(p, gp, u, c) - Objective(p, gm, u, c)) / (double(gp[i]) - gm[i]);
    EXPECT_NEAR(dg[i], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << "dg[" << i << "]";
    auto up = u, um = u;
    up[i] += step;
    um[i] -= step;
    fd = (Objective(p, g, up, c) - Objective(p, g, um, c)) / (double(up[i]) - um[i]);
    EXPECT_NEAR(du[i], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << "du[" << i << "]";
  }
}

TEST(SwiGluRef, SaturatedSigmoidStaysFinite) {
  const std::vector<float> g = {30.0f, -30.0f, 88.0f, -88.0f, 100.0f, -100.0f,
                                1e30f, -1e30f, 0.0f,  -0.0f};
  SwiGluParams p{static_cast<int64_t>(g.size()), ScalarKind::kF32};
  const std::vector<float> u(g.size(), 1.5f), dy(g.size(), -2.0f);
  std::vector<float> y(g.size()), dg(g.size()), du(g.size());
  SwiGluForwardRef(p, g.data(), u.data(), y.data());
  SwiGluBackwardRef(p, g.data(), u.data(), dy.data(), dg.data(), du.data());
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_TRUE(std::isfinite(y[i]) && std::isfinite(dg[i]) && std::isfinite(du[i]))
        << "g = " << g[i] << ": y " << y[i] << " dg " << dg[i] << " du " << du[i];
  }
  // g = 30: sig = 1 - 9.4e-14, so y = g u, dg = dy u, du = dy g.
  EXPECT_NEAR(y[0], 45.0, 1e-5);
  EXPECT_NEAR(dg[0], -3.0, 1e-5);
  EXPECT_NEAR(du[0], -60.0, 1e-5);
  // g = -30: silu(g) = -30 e^-30 = -2.8e-12 and its slope about -29 e^-30.
  EXPECT_NEAR(y[1], -30.0 * std::exp(-30.0) * 1.5, 1e-15);
  EXPECT_NEAR(dg[1], -2.0 * 1.5 * -29.0 * std::exp(-30.0), 1e-14);
  EXPECT_NEAR(du[1], -2.0 * -30.0 * std::exp(-30.0), 1e-14);
  // Far out the gate is g or 0 exactly, and its slope 1 or 0.
  EXPECT_FLOAT_EQ(y[6], 1.5e30f);
  EXPECT_EQ(y[7], 0.0f);
  EXPECT_EQ(dg[6], -3.0f);
  EXPECT_EQ(dg[7], 0.0f);
  EXPECT_EQ(du[7], 0.0f);
  // silu(0) = 0 with slope 1/2.
  EXPECT_EQ(y[8], 0.0f);
  EXPECT_EQ(dg[8], -1.5f);
}

TEST(SwiGluRef, SkippedGradientsMatchFullBackward) {
  SwiGluParams p{91, ScalarKind::kF32};
  auto g = Random(p.numel, 6, 4.0f);
  auto u = Random(p.numel, 7);
  auto dy = Random(p.numel, 8);
  std::vector<float> dg_a(p.numel), du_a(p.numel), dg_b(p.numel), du_b(p.numel);
  SwiGluBackwardRef(p, g.data(), u.data(), dy.data(), dg_a.data(), du_a.data());
  SwiGluBackwardRef(p, g.data(), u.data(), dy.data(), dg_b.data(), nullptr);
  SwiGluBackwardRef(p, g.data(), u.data(), dy.data(), nullptr, du_b.data());
  EXPECT_EQ(dg_a, dg_b);
  EXPECT_EQ(du_a, du_b);
}

}  // namespace
}  // namespace foak
