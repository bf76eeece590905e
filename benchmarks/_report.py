"""Printing benchmark results as aligned tables (and markdown for RESULTS.md)."""

import platform

import jax


def machine() -> str:
  return (f"{platform.processor() or platform.machine()}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s), "
          f"jax {jax.__version__}")


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
  width = max(len(k) for k, _ in rows)
  print(f"\n## {title}\n({machine()})\n")
  print("| measure | value |\n|---|---|")
  for key, value in rows:
    print(f"| {key.ljust(width)} | {value} |")
