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
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from verification.provenance.configdiff import _chat_template, added_tokens, full_vocab, read_json
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


# --- from the model alone ------------------------------------------------------------------------
#
# Without a base there is no "added beyond the base vocabulary", so the tokens examined are the
# ones the tokenizer says are in use: added tokens written literally in the chat template, tokens
# the author declared as their additional special tokens, and the BOS/EOS tokens when the template
# emits them. Declared-but-unused tokens are left alone on purpose: honest tokenizers carry
# hundreds of placeholders that were never trained (Llama 3's ~250 <|reserved_special_token_N|>),
# so are pad and unk, which training masks out. A name saying "reserved" or "unused" keeps a
# token out unless the template writes it (a used token cannot hide behind its name).
#
# Signs of an untrained row from the model alone (Magikarp, Land & Bartolo 2024, finds
# under-trained tokens from the rows alone; ours are the cheap, conservative subset):
# zero, constant, equal to the mean of the other rows (resize_token_embeddings' init), equal to
# another row (any shared init or a copy), or a *low* norm outlier (log-norm more than
# NORM_OUTLIER_Z robust SDs below the other rows' and below all of them). High-norm outliers are not
# signs: heavily used special tokens (BOS, turn markers) often have the largest rows.

RESERVED_NAME = re.compile(r"reserved|unused", re.IGNORECASE)
SKIPPED_ROLES = ("pad_token", "unk_token")


def _declared_specials(*configs: dict | None) -> set[str]:
    names: set[str] = set()
    for config in configs:
        for key in ("additional_special_tokens", "extra_special_tokens"):
            value = (config or {}).get(key)
            entries = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
            for entry in entries:
                content = entry if isinstance(entry, str) else entry.get("content") if isinstance(entry, dict) else None
                if isinstance(content, str):
                    names.add(content)
    return names


def _role(config: dict, role: str) -> str | None:
    value = config.get(role)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def used_tokens(model_dir: Path) -> tuple[list[dict], list[dict]]:
    """([{token, id, why}], [{token, id} declared but left out]) for the tokens the tokenizer uses."""
    tokenizer_json = read_json(model_dir / "tokenizer.json", "tokenizer") or {}
    config = read_json(model_dir / "tokenizer_config.json", "tokenizer config") or {}
    specials_map = read_json(model_dir / "special_tokens_map.json", "special tokens map") or {}
    template = _chat_template(model_dir, config) or ""
    vocab = full_vocab(tokenizer_json)
    declared = _declared_specials(config, specials_map)
    skipped_roles = {_role(config, r) or _role(specials_map, r) for r in SKIPPED_ROLES} - {None}
    roles = {
        _role(config, r) or _role(specials_map, r): r for r in ("bos_token", "eos_token") if r in template
    }
    candidates = set(added_tokens(tokenizer_json)) | declared | set(roles)
    used: list[dict] = []
    left_out: list[dict] = []
    for token in sorted(t for t in candidates if t in vocab):
        in_template = bool(token) and token in template
        if in_template:
            why = "chat_template"
        elif token in skipped_roles or RESERVED_NAME.search(token):
            left_out.append({"token": token, "id": vocab[token]})
            continue
        elif token in declared:
            why = "declared_special"
        elif token in roles:
            why = f"chat_template:{roles[token]}"
        else:
            left_out.append({"token": token, "id": vocab[token]})
            continue
        used.append({"token": token, "id": vocab[token], "why": why})
    return sorted(used, key=lambda e: e["id"])[:MAX_CHECKED_TOKENS], left_out


def _own_row_scan(index: WeightIndex, name: str, rows: dict[int, object], special: set[int]):
    """(norms of the ordinary rows, their mean, {id: distance to the nearest other row}).

    Ordinary rows: neither examined nor another added/special token (a zero pad row or a block of
    untrained placeholders would otherwise set the reference's low end)."""
    import torch

    ids = sorted(rows)
    stacked = torch.stack([rows[i] for i in ids]).double()
    nearest = torch.full((len(ids),), math.inf, dtype=torch.float64)
    norms: list[float] = []
    total = None
    count = 0
    start = 0
    checked = set(ids)
    excluded = checked | special
    for block in iter_row_blocks(index, name, index.tensors[name].shape[0]):
        block = block.reshape(block.shape[0], -1).double()
        distances = torch.cdist(stacked, block)
        for offset, token_id in enumerate(range(start, start + block.shape[0])):
            if token_id in checked:
                distances[ids.index(token_id), offset] = math.inf
        nearest = torch.minimum(nearest, distances.min(dim=1).values)
        keep = [o for o in range(block.shape[0]) if start + o not in excluded]
        kept = block[keep]
        norms.extend(torch.linalg.vector_norm(kept, dim=1).tolist())
        partial = kept.sum(dim=0)
        total = partial if total is None else total + partial
        count += len(keep)
        start += block.shape[0]
    mean = (total / max(count, 1)).float() if total is not None else None
    return norms, mean, dict(zip(ids, nearest.tolist()))


def alone_reasons(row, norms: list[float], mean, nearest_other: float) -> list[str]:
    import torch

    median = statistics.median(norms) if norms else 0.0
    tolerance = EQUAL_TOLERANCE * max(median, 1e-12)
    norm = float(torch.linalg.vector_norm(row))
    if norm <= tolerance * 1e-3:
        return ["zero"]
    reasons = []
    if float(row.max() - row.min()) <= tolerance * 1e-3:
        reasons.append("constant")
    if mean is not None and float(torch.linalg.vector_norm(row - mean)) <= tolerance:
        reasons.append("mean_init")
    if nearest_other <= tolerance:
        reasons.append("duplicate")
    if norms and norm < min(norms) and _robust_log_norm_z(norm, norms) > NORM_OUTLIER_Z:
        reasons.append("norm_outlier")
    return reasons


@dataclass
class UsedTokenReport:
    checked: list[dict] = field(default_factory=list)  # [{token, id, why}]
    left_out: list[dict] = field(default_factory=list)
    untrained: list[dict] = field(default_factory=list)  # [{token, id, why, reasons, confirmed}]
    tensors_checked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "checked": self.checked,
            "n_left_out": len(self.left_out),
            "left_out": [entry["token"] for entry in self.left_out[:50]],
            "untrained": self.untrained,
            "tensors_checked": self.tensors_checked,
            "rule": "added tokens the chat template writes, declared additional special tokens, BOS/EOS when "
            "the template emits them; pad/unk and tokens named reserved/unused only when the template writes them",
        }


def check_used_tokens(sub: WeightIndex, model_dir: Path) -> UsedTokenReport:
    """Untrained rows among the tokens the tokenizer uses, from the submitted model alone."""
    report = UsedTokenReport()
    report.checked, report.left_out = used_tokens(model_dir)
    if not report.checked:
        return report
    ids = [entry["id"] for entry in report.checked]
    findings: dict[int, dict[str, list[str]]] = {}
    for name in sub.names():
        info = sub.tensors[name]
        if not is_vocab_tensor(name) or len(info.shape) != 2 or info.shape[0] < 2:
            continue
        report.tensors_checked.append(name)
        rows = gather_rows(sub, name, ids)
        if not rows:
            continue
        norms, mean, nearest = _own_row_scan(sub, name, rows, {e["id"] for e in report.left_out})
        for token_id, row in rows.items():
            reasons = alone_reasons(row, norms, mean, nearest[token_id])
            if reasons:
                findings.setdefault(token_id, {})[name] = reasons
    report.untrained = [
        {**entry, "reasons": findings[entry["id"]]} for entry in report.checked if entry["id"] in findings
    ]
    return report


def confirm_against_base(report: UsedTokenReport, sub: WeightIndex, base: WeightIndex, base_dir: Path) -> None:
    """Mark each model-alone finding against a base the weights derive from: `added` (the base
    has no such token: the Reflection pattern), `inherited` (the base has the same row: it was
    untrained there too, not this model's doing) or `rewritten` (the model changed the base's
    row, to something that looks untrained)."""
    base_vocab = full_vocab(read_json(base_dir / "tokenizer.json", "tokenizer"))
    for entry in report.untrained:
        if entry["token"] not in base_vocab or base_vocab[entry["token"]] != entry["id"]:
            entry["confirmed"] = "added"
            continue
        same = True
        for name in entry["reasons"]:
            if name not in base or base.tensors[name].shape[1:] != sub.tensors[name].shape[1:]:
                same = False
                continue
            mine = gather_rows(sub, name, [entry["id"]]).get(entry["id"])
            theirs = gather_rows(base, name, [entry["id"]]).get(entry["id"])
            median = row_stats(base, name, min(base.tensors[name].shape[0], 4096)).median_norm
            if mine is None or theirs is None or float((mine - theirs).norm()) > EQUAL_TOLERANCE * max(median, 1e-12):
                same = False
        entry["confirmed"] = "inherited" if same else "rewritten"
