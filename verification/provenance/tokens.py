"""Untrained new tokens: embedding / lm_head rows of added tokens left at initialisation.

Reflection's upload added `<thinking>`-style tokens whose rows were never trained (methods.md §4).
For each token the submitted tokenizer has and the base's has not, each vocabulary tensor's row
for it is checked against signs of initialisation *(criteria and tolerances ours)*:

- ``no_row``: the id is beyond the tensor's rows (the embedding was never resized);
- ``zero``: the row is zero;
- ``constant``: all components are equal;
- ``mean_init``: the row equals the mean of the old rows (base's, or the submission's own first
  rows) — what transformers' ``resize_token_embeddings`` writes (mean + noise with covariance
  1e-9·Σ, i.e. ~3e-5 of a row's spread, far inside the tolerance);
- ``duplicate``: the row equals another new token's row (any shared init: mean, zeros, a copy);
- ``unchanged_from_base``: the token reuses an id the base already had and the row is the base's;
- ``norm_outlier``: log row-norm more than 8 robust standard deviations (MAD) from the base's
  row-norm distribution *and* outside its range.

"Equal" means within EQUAL_TOLERANCE × the median row norm of the base (1e-3): training moves a
row by orders of magnitude more than that, rounding to bf16 by less. Rows are streamed in
blocks: only the new tokens' rows and running sums are held.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from verification.provenance.configdiff import full_vocab, read_json
from verification.provenance.distance import iter_row_blocks
from verification.provenance.weights import WeightIndex, is_vocab_tensor

EQUAL_TOLERANCE = 1e-3
NORM_OUTLIER_Z = 8.0
MAX_CHECKED_TOKENS = 4096  # a wholly different tokenizer is a config-diff finding, not this check's


@dataclass
class RowStats:
    """Row norms and row mean of a vocabulary tensor's first `rows` rows (streamed)."""

    norms: list[float]
    mean: object  # torch tensor [dim]

    @property
    def median_norm(self) -> float:
        return statistics.median(self.norms) if self.norms else 0.0


def row_stats(index: WeightIndex, name: str, rows: int) -> RowStats:
    import torch

    norms: list[float] = []
    total = None
    for block in iter_row_blocks(index, name, rows):
        block = block.reshape(block.shape[0], -1).double()
        norms.extend(torch.linalg.vector_norm(block, dim=1).tolist())
        partial = block.sum(dim=0)
        total = partial if total is None else total + partial
    mean = (total / max(rows, 1)).float() if total is not None else None
    return RowStats(norms, mean)


def gather_rows(index: WeightIndex, name: str, ids: list[int]) -> dict[int, object]:
    """The rows of the given ids, reading only those rows (contiguous runs sliced together)."""
    from safetensors import safe_open

    info = index.tensors[name]
    wanted = sorted(i for i in set(ids) if 0 <= i < info.shape[0])
    rows: dict[int, object] = {}
    start = 0
    while start < len(wanted):
        stop = start
        while stop + 1 < len(wanted) and wanted[stop + 1] == wanted[stop] + 1 and stop - start < 4095:
            stop += 1
        with safe_open(str(info.file), framework="pt") as handle:
            block = handle.get_slice(name)[wanted[start] : wanted[stop] + 1].float()
        for offset, token_id in enumerate(range(wanted[start], wanted[stop] + 1)):
            rows[token_id] = block[offset].reshape(-1).clone()
        start = stop + 1
    return rows


def _robust_log_norm_z(value: float, norms: list[float]) -> float:
    logs = [math.log(n) for n in norms if n > 0]
    if not logs or value <= 0:
        return math.inf
    centre = statistics.median(logs)
    mad = statistics.median(abs(x - centre) for x in logs) * 1.4826
    return abs(math.log(value) - centre) / mad if mad > 0 else (0.0 if math.log(value) == centre else math.inf)


def row_reasons(
    token_id: int,
    row,
    new_rows: dict[int, object],
    base_stats: RowStats,
    own_mean,
    base_row,
) -> list[str]:
    import torch

    tolerance = EQUAL_TOLERANCE * max(base_stats.median_norm, 1e-12)
    norm = float(torch.linalg.vector_norm(row))
    reasons = []
    if norm <= tolerance * 1e-3:
        return ["zero"]
    if float(row.max() - row.min()) <= tolerance * 1e-3:
        reasons.append("constant")
    for mean in (base_stats.mean, own_mean):
        if mean is not None and float(torch.linalg.vector_norm(row - mean)) <= tolerance:
            reasons.append("mean_init")
            break
    if any(other_id != token_id and float(torch.linalg.vector_norm(row - other)) <= tolerance for other_id, other in new_rows.items()):
        reasons.append("duplicate")
    if base_row is not None and float(torch.linalg.vector_norm(row - base_row)) <= tolerance:
        reasons.append("unchanged_from_base")
    if base_stats.norms:
        low, high = min(base_stats.norms), max(base_stats.norms)
        if (norm < low or norm > high) and _robust_log_norm_z(norm, base_stats.norms) > NORM_OUTLIER_Z:
            reasons.append("norm_outlier")
    return reasons


@dataclass
class NewTokenReport:
    added: list[dict] = field(default_factory=list)  # [{token, id}]
    untrained: list[dict] = field(default_factory=list)  # [{token, id, reasons: {tensor: [...]}}]
    tensors_checked: list[str] = field(default_factory=list)
    note: str | None = None

    def as_dict(self) -> dict:
        return {
            "added": self.added[:MAX_CHECKED_TOKENS],
            "n_added": len(self.added),
            "untrained": self.untrained,
            "tensors_checked": self.tensors_checked,
            "note": self.note,
            "thresholds": {"equal_tolerance_of_median_norm": EQUAL_TOLERANCE, "norm_outlier_z": NORM_OUTLIER_Z},
        }


def new_tokens(submitted_dir: Path, base_dir: Path) -> list[tuple[str, int]]:
    """(token, id) present in the submitted tokenizer and absent from the base's, by string."""
    submitted = full_vocab(read_json(submitted_dir / "tokenizer.json", "tokenizer"))
    base = full_vocab(read_json(base_dir / "tokenizer.json", "tokenizer"))
    return sorted(((token, index) for token, index in submitted.items() if token not in base), key=lambda t: t[1])


def check_new_tokens(sub: WeightIndex, base: WeightIndex, submitted_dir: Path, base_dir: Path) -> NewTokenReport:
    report = NewTokenReport()
    added = new_tokens(submitted_dir, base_dir)
    report.added = [{"token": token, "id": index} for token, index in added]
    if not added:
        return report
    if len(added) > MAX_CHECKED_TOKENS:
        report.note = f"{len(added)} tokens differ from the base's: a different tokenizer, rows not checked"
        return report
    ids = [index for _, index in added]
    findings: dict[int, dict[str, list[str]]] = {}
    for name in sub.names():
        info = sub.tensors[name]
        if not is_vocab_tensor(name) or len(info.shape) != 2 or name not in base:
            continue
        if base.tensors[name].shape[1:] != info.shape[1:]:
            continue
        report.tensors_checked.append(name)
        base_rows = base.tensors[name].shape[0]
        base_stats = row_stats(base, name, base_rows)
        own_mean = row_stats(sub, name, min(base_rows, info.shape[0])).mean
        rows = gather_rows(sub, name, ids)
        reused = gather_rows(base, name, [i for i in ids if i < base_rows])
        for token_id in ids:
            if token_id not in rows:
                findings.setdefault(token_id, {})[name] = ["no_row"]
                continue
            reasons = row_reasons(token_id, rows[token_id], rows, base_stats, own_mean, reused.get(token_id))
            if reasons:
                findings.setdefault(token_id, {})[name] = reasons
    by_id = {index: token for token, index in added}
    report.untrained = [{"token": by_id[i], "id": i, "reasons": findings[i]} for i in sorted(findings)]
    return report
