"""Streaming access to a model's safetensors weights, one tensor at a time.

Provenance compares a submission with one or more base models of the same shape; for a 70B model
each of them is 140+ GB, so nothing here ever holds a whole model. The index is built from the
safetensors headers alone (names, shapes, dtypes, which shard), and `load` reads one tensor,
converted to float32, from a *freshly opened* memory map that is closed again right after.

Why reopen per tensor: pages of a memory map that were read stay resident, and counted in the
process's RSS, for as long as the map is open. One long-lived `safe_open` handle per shard would
let the resident set grow to the size of every shard read, i.e. to the whole model; reopening
costs one header parse per tensor (microseconds) and keeps the peak bounded by the few tensors a
comparison holds at once.

Pickled checkpoints (`*.bin`, `*.pt`) are never loaded: unpickling runs arbitrary code from a
hostile repo. A model without safetensors weights gets a `ProvenanceInputError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Names of tensors whose first dimension is the vocabulary: their row count changes when tokens
# are added, so they are compared on the rows the two models share and kept out of the shape
# signature and of the nearest-base decision (methods.md §4: "excluding embeddings/lm_head").
VOCAB_TENSOR_MARKERS: tuple[str, ...] = (
    "embed_tokens",
    "lm_head",
    "wte",
    "word_embeddings",
    "embed_out",
    "tok_embeddings",
    "output.weight",
)

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own header limit


class ProvenanceInputError(ValueError):
    """A model directory cannot be checked; the message says why in words a submitter understands."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    file: Path

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def is_vocab_tensor(name: str) -> bool:
    return any(marker in name for marker in VOCAB_TENSOR_MARKERS)


def _read_header(path: Path) -> dict[str, Any]:
    """Parse a safetensors header without mapping the file (validates what a hostile file says)."""
    try:
        with path.open("rb") as handle:
            length_bytes = handle.read(8)
            if len(length_bytes) != 8:
                raise ProvenanceInputError(f"{path.name}: not a safetensors file (shorter than 8 bytes)")
            length = int.from_bytes(length_bytes, "little")
            if length <= 0 or length > MAX_HEADER_BYTES:
                raise ProvenanceInputError(f"{path.name}: not a safetensors file (header length {length})")
            header = json.loads(handle.read(length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvenanceInputError(f"{path.name}: unreadable safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ProvenanceInputError(f"{path.name}: safetensors header is not a JSON object")
    return header


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a model: the ones the shard index names, else every *.safetensors."""
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProvenanceInputError(f"{index_path.name}: malformed shard index ({exc})") from exc
        files = []
        for name in names:
            candidate = (model_dir / name).resolve()
            if model_dir.resolve() not in candidate.parents or not candidate.is_file():
                raise ProvenanceInputError(f"{index_path.name}: shard {name!r} is missing or outside the model")
            files.append(candidate)
        return files
    return sorted(model_dir.glob("*.safetensors"))


class WeightIndex:
    """Names, shapes and dtypes of every tensor of a model, from headers only."""

    def __init__(self, model_dir: Path | str):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ProvenanceInputError(f"{self.model_dir}: not a directory")
        files = weight_files(self.model_dir)
        if not files:
            pickled = sorted(p.name for p in self.model_dir.glob("*") if p.suffix in {".bin", ".pt", ".pth"})
            hint = f" (found pickled {', '.join(pickled)}, which is never loaded)" if pickled else ""
            raise ProvenanceInputError(f"{self.model_dir}: no safetensors weights{hint}")
        self.tensors: dict[str, TensorInfo] = {}
        for path in files:
            for name, meta in _read_header(path).items():
                if name == "__metadata__":
                    continue
                try:
                    shape = tuple(int(d) for d in meta["shape"])
                    dtype = str(meta["dtype"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise ProvenanceInputError(f"{path.name}: bad entry for tensor {name!r}") from exc
                self.tensors[name] = TensorInfo(name, shape, dtype, path)
        self.files = files

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return sorted(self.tensors)

    def load(self, name: str, rows: int | None = None):
        """One tensor as a float32 torch tensor (optionally only its first `rows` rows)."""
        import torch
        from safetensors import safe_open

        info = self.tensors[name]
        with safe_open(str(info.file), framework="pt") as handle:
            if rows is None or rows >= info.shape[0]:
                tensor = handle.get_tensor(name)
            else:
                tensor = handle.get_slice(name)[:rows]
        # .to() copies whenever the dtype changes; .clone() for float32 so the result owns its
        # memory and the map can be closed.
        return tensor.to(torch.float32) if tensor.dtype != torch.float32 else tensor.clone()

    def dtypes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for info in self.tensors.values():
            counts[info.dtype] = counts.get(info.dtype, 0) + info.numel
        return counts


def shape_signature(model_dir: Path | str) -> str:
    """A 64-hex digest of the non-vocabulary tensors' names and shapes.

    Two models have the same signature exactly when their weights can be compared tensor by
    tensor; vocabulary tensors are left out so that a fine-tune that added tokens still matches
    its base. Maintainers store it in KnownBase.shape_signature to pick candidate bases cheaply.
    """
    index = WeightIndex(model_dir)
    digest = hashlib.sha256()
    for name in index.names():
        if is_vocab_tensor(name):
            continue
        digest.update(f"{name}:{list(index.tensors[name].shape)}\n".encode())
    return digest.hexdigest()
