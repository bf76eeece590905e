"""Printing benchmark results as aligned tables (and markdown for RESULTS.md)."""

import os
import platform

import jax

from launch import allocator


def cpu_name() -> str:
  """The CPU's model name (/proc/cpuinfo on Linux), else the architecture."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> str:
  devices = jax.devices()
  kind = getattr(devices[0], "device_kind", devices[0].platform)
  return (f"{cpu_name()}, {os.cpu_count()} cores; {len(devices)} "
          f"{kind} device(s), jax {jax.__version__}, {allocator.name()}")


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
  width = max(len(k) for k, _ in rows)
  print(f"\n## {title}\n({machine()})\n")
  print("| measure | value |\n|---|---|")
  for key, value in rows:
    print(f"| {key.ljust(width)} | {value} |")
