// The rms_norm CPU reference is the oracle for the CUDA kernel, so it is itself
// checked: forward against the formula in double precision, backward against
// central finite differences of a scalar objective, at odd shapes.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/rms_norm/rms_norm.h"

namespace foak {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = shift + scale * dist(gen);
  return v;
}

// objective = sum(y * c) for fixed random c, so d objective / dy = c.
double Objective(const RmsNormParams& p, const std::vector<float>& x, const std::vector<float>& w,
                 const std::vector<float>& c) {
  double total = 0.0;
  for (int64_t n = 0; n < p.rows; ++n) {
    double ss = 0.0;
    for (int64_t h = 0; h < p.hidden; ++h) ss += double(x[n * p.hidden + h]) * x[n * p.hidden + h];
    double r = 1.0 / std::sqrt(ss / p.hidden + p.eps);
    for (int64_t h = 0; h < p.hidden; ++h) {
      total += c[n * p.hidden + h] * w[h] * x[n * p.hidden + h] * r;
    }
  }
  return total;
}

TEST(RmsNormRef, ForwardMatchesFormula) {
  RmsNormParams p{5, 123, 1e-6f, ScalarKind::kF32};
  auto x = Random(p.rows * p.hidden, 1);
  auto w = Random(p.hidden, 2, 0.1f, 1.0f);
  std::vector<float> y(x.size()), rstd(p.rows);
  RmsNormForwardRef(p, x.data(), w.data(), y.data(), rstd.data());
  for (int64_t n = 0; n < p.rows; ++n) {
    double ss = 0.0;
    for (int64_t h = 0; h < p.hidden; ++h) ss += double(x[n * p.hidden + h]) * x[n * p.hidden + h];
    double r = 1.0 / std::sqrt(ss / p.hidden + 1e-6);
    EXPECT_NEAR(rstd[n], r, 1e-6 * r);
    for (int64_t h = 0; h < p.hidden; ++h) {
      EXPECT_NEAR(y[n * p.hidden + h], w[h] * x[n * p.hidden + h] * r, 1e-5);
    }
  }
}

TEST(RmsNormRef, BackwardMatchesFiniteDifferences) {
  RmsNormParams p{3, 37, 1e-5f, ScalarKind::kF32};
  auto x = Random(p.rows * p.hidden, 3);
  auto w = Random(p.hidden, 4, 0.2f, 1.0f);
  auto c = Random(x.size(), 5);
  std::vector<float> y(x.size()), rstd(p.rows), dx(x.size()), dw(p.hidden);
  RmsNormForwardRef(p, x.data(), w.data(), y.data(), rstd.data());
  RmsNormBackwardRef(p, x.data(), w.data(), rstd.data(), c.data(), dx.data(), dw.data());
  const float step = 1e-2f;
  for (size_t i = 0; i < x.size(); i += 7) {
    auto xp = x, xm = x;
    xp[i] += step;
    xm[i] -= step;
    double fd = (Objective(p, xp, w, c) - Objective(p, xm, w, c)) / (2.0 * step);
    EXPECT_NEAR(dx[i], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << "dx[" << i << "]";
  }
  for (int64_t h = 0; h < p.hidden; h += 3) {
    auto wp = w, wm = w;
    wp[h] += step;
    wm[h] -= step;
    double fd = (Objective(p, x, wp, c) - Objective(p, x, wm, c)) / (2.0 * step);
    EXPECT_NEAR(dw[h], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << "dw[" << h << "]";
  }
}

TEST(RmsNormRef, FrozenWeightSkipsWeightGradient) {
  RmsNormParams p{2, 9, 1e-6f, ScalarKind::kF32};
  auto x = Random(p.rows * p.hidden, 6);
  auto w = Random(p.hidden, 7, 0.1f, 1.0f);
  auto dy = Random(x.size(), 8);
  std::vector<float> y(x.size()), rstd(p.rows), dx_a(x.size()), dx_b(x.size()), dw(p.hidden);
  RmsNormForwardRef(p, x.data(), w.data(), y.data(), rstd.data());
  RmsNormBackwardRef(p, x.data(), w.data(), rstd.data(), dy.data(), dx_a.data(), dw.data());
  RmsNormBackwardRef(p, x.data(), w.data(), rstd.data(), dy.data(), dx_b.data(), nullptr);
  EXPECT_EQ(dx_a, dx_b);
}

}  // namespace
}  // namespace foak
