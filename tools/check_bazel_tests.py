"""Checks that Bazel has one test target per pytest test file.

`make test` runs the suite once, with pytest. This keeps the second runner
honest without running everything twice: `bazel query` lists the py_test
targets under //tests, and each tests/<name>_test.py must have one, except
the files tests/BUILD lists in PYTEST_ONLY; `bazel build --nobuild` then
analyses every target (their BUILD rules and dependencies resolve).
"""

import ast
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_only(build_file: str) -> set[str]:
  text = open(build_file, encoding="utf-8").read()
  match = re.search(r"^PYTEST_ONLY\s*=\s*(\[.*?\])", text, re.S | re.M)
  return set(ast.literal_eval(match.group(1))) if match else set()


def main() -> int:
  tests_dir = os.path.join(ROOT, "tests")
  files = {os.path.basename(f) for f in glob.glob(
      os.path.join(tests_dir, "*_test.py"))}
  expected = {f[:-len(".py")] for f in files - pytest_only(
      os.path.join(tests_dir, "BUILD"))}
  query = subprocess.run(
      ["bazel", "query", "kind(py_test, //tests/...)", "--output=label"],
      cwd=ROOT, capture_output=True, text=True)
  if query.returncode != 0:
    print(f"error: bazel query failed:\n{query.stderr[-3000:]}",
          file=sys.stderr)
    return 1
  targets = {line.split(":", 1)[1] for line in query.stdout.split()
             if line.startswith("//tests:")}
  missing, extra = expected - targets, targets - expected
  if missing or extra:
    print(f"error: Bazel and pytest disagree: no target for "
          f"{sorted(missing)}; targets without a test file {sorted(extra)}.",
          file=sys.stderr)
    return 1
  build = subprocess.run(["bazel", "build", "--nobuild", "//tests/..."],
                         cwd=ROOT, capture_output=True, text=True)
  if build.returncode != 0:
    print(f"error: bazel cannot analyse //tests/...:\n"
          f"{build.stderr[-3000:]}", file=sys.stderr)
    return 1
  print(f"bazel: {len(targets)} test targets, one per pytest file "
        f"(pytest only: {sorted(files - {t + '.py' for t in targets})})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
