"""Weight distance to candidate bases, and the decision which base a model was derived from.

Per tensor, against each candidate base b (methods.md §4):

    r_b   = ‖W − W_b‖_F / ‖W_b‖_F           relative distance
    cos_b = ⟨W, W_b⟩ / (‖W‖_F ‖W_b‖_F)      cosine of the flattened tensors (REEF's cheap "PCS")

Why these separate fine-tunes from independent models. Independently initialised and trained
matrices are, as high-dimensional vectors, nearly orthogonal: cos ≈ 0 (its spread is 1/√n for n
elements, < 0.01 for a 128×128 matrix), and then r² = 1 + q² − 2q·cos ≈ 1 + q² with q = ‖W‖/‖W_b‖,
so r ≈ √2 for similar norms and r ≥ 1 whatever the norms. A fine-tune adds an update Δ to W_b; if
Δ is orthogonal to W_b, cos = 1/√(1 + ρ²) with ρ = ‖Δ‖/‖W_b‖ = r. Fine-tunes move weights by a few
percent (r ≪ 1, cos ≈ 1). The threshold *(ours)* is cos = 0.5, i.e. ρ = √3: an "update" larger
than the weights themselves is no longer a fine-tune of them, and independent weights come
nowhere near it. Cosine is the test because it is scale-free (r also grows when a model's norms
drift, e.g. after long continued training); r ranks candidates that both pass.

Only matrices (≥ 2-D, not vocabulary tensors) decide: RMSNorm/LayerNorm weights start at 1 in
every model, so any two models have cos ≈ 1 there; embeddings and lm_head change shape when
tokens are added and are excluded from the cheap PCS by REEF. They are still measured and shown.

Which base is nearest must hold *consistently across layers*: a candidate X is "clearly nearer"
than the claimed base C when X has the smaller r in at least 90% of the compared matrices and the
median ratio r_X / r_C is at most 0.5 *(ours)*: a fine-tune of X sits at its own small distance from X
and at ≈ the X–C distance from C, so the ratio for a true fine-tune of X is far below 0.5, while two
near-identical bases (a re-upload) give ratios near 1 and no decision. Permuted weights (hidden
units shuffled to hide the origin) defeat both tests; REEF's CKA on hidden states is the remedy and
is not implemented here.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from verification.provenance.weights import WeightIndex, is_vocab_tensor

DERIVED_COSINE = 0.5
CONSISTENCY_FRACTION = 0.9
CLEARLY_NEARER_RATIO = 0.5
# Tensors are streamed in row blocks of at most this many elements (16 MiB in float32) so that
# even a 70B model's embedding (1e9 elements) never sits in memory whole.
CHUNK_ELEMENTS = 4 * 1024 * 1024

_LAYER = re.compile(r"^(.*?\.(?:layers|h|blocks|layer)\.\d+)\.")


def layer_key(tensor_name: str) -> str:
    """`model.layers.3.self_attn.q_proj.weight` -> `model.layers.3`; other tensors keep their module name."""
    match = _LAYER.match(tensor_name)
    if match:
        return match.group(1)
    return re.sub(r"\.(weight|bias)$", "", tensor_name)


def layer_number(key: str) -> tuple[int, str]:
    """Sort key in model order: embeddings, numbered layers, then the rest (final norm, lm_head)."""
    match = re.search(r"\.(?:layers|h|blocks|layer)\.(\d+)$", key)
    if match:
        return (int(match.group(1)), key)
    return (-1, key) if "embed" in key or key.endswith("wte") else (1 << 30, key)


def comparable_rows(sub: WeightIndex, base: WeightIndex, name: str) -> int | None:
    """Rows to compare for a tensor present in both models, or None when shapes are incompatible.

    Equal shapes compare whole; a vocabulary tensor whose trailing dimensions agree compares the
    rows both have (tokens appended to the vocabulary add rows at the end)."""
    if name not in base:
        return None
    a, b = sub.tensors[name].shape, base.tensors[name].shape
    if a == b:
        return a[0] if a else 1
    if is_vocab_tensor(name) and len(a) == len(b) >= 2 and a[1:] == b[1:]:
        return min(a[0], b[0])
    return None


def iter_row_blocks(index: WeightIndex, name: str, rows: int) -> Iterator:
    """float32 blocks of the tensor's first `rows` rows, each at most CHUNK_ELEMENTS elements."""
    shape = index.tensors[name].shape
    if len(shape) == 0:
        yield index.load(name).reshape(1)
        return
    row_size = max(1, math.prod(shape[1:]))
    step = max(1, CHUNK_ELEMENTS // row_size)
    if rows <= step and rows == shape[0]:
        yield index.load(name)
        return
    from safetensors import safe_open

    info = index.tensors[name]
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        with safe_open(str(info.file), framework="pt") as handle:
            block = handle.get_slice(name)[start:stop]
        yield block.float()


def _block_sums(a, b, step: int = 1 << 20) -> tuple[float, float, float, float]:
    """(‖a−b‖², ‖a‖², ‖b‖², ⟨a,b⟩) accumulated in float64 over 1M-element float64 slices, so no
    full-size temporary is ever made (a difference of float32 values is exact in float64)."""
    import torch

    diff_sq = a_sq = b_sq = dot = 0.0
    for start in range(0, a.numel(), step):
        a_slice, b_slice = a[start : start + step].double(), b[start : start + step].double()
        a_sq += float(torch.dot(a_slice, a_slice))
        b_sq += float(torch.dot(b_slice, b_slice))
        dot += float(torch.dot(a_slice, b_slice))
        a_slice.sub_(b_slice)
        diff_sq += float(torch.dot(a_slice, a_slice))
    return diff_sq, a_sq, b_sq, dot


@dataclass
class TensorComparison:
    relative_distance: float
    cosine: float
    base_norm: float = 0.0  # ‖W_b‖_F, so that absolute distances can be recovered (sibling positions)

    @property
    def distance(self) -> float:
        return self.relative_distance * self.base_norm


def compare_tensor(sub: WeightIndex, base: WeightIndex, name: str, rows: int) -> TensorComparison:
    """r and cos for one tensor, streaming both models in lockstep.

    Memory: the two blocks (views of the memory maps) plus 1M-element float64 slices."""
    diff_sq = sub_sq = base_sq = dot = 0.0
    for block, base_block in zip(iter_row_blocks(sub, name, rows), iter_row_blocks(base, name, rows)):
        sums = _block_sums(block.reshape(-1), base_block.reshape(-1))
        diff_sq, sub_sq, base_sq, dot = diff_sq + sums[0], sub_sq + sums[1], base_sq + sums[2], dot + sums[3]
        del block, base_block
    base_norm, sub_norm = math.sqrt(base_sq), math.sqrt(sub_sq)
    if base_norm == 0.0:
        relative = 0.0 if diff_sq == 0.0 else math.inf
    else:
        relative = math.sqrt(diff_sq) / base_norm
    if base_norm == 0.0 or sub_norm == 0.0:
        cosine = 1.0 if diff_sq == 0.0 else 0.0
    else:
        cosine = dot / (base_norm * sub_norm)
    return TensorComparison(relative, cosine, base_norm)


def is_decision_tensor(index: WeightIndex, name: str) -> bool:
    return len(index.tensors[name].shape) >= 2 and not is_vocab_tensor(name)


@dataclass
class CandidateDistances:
    name: str
    per_tensor: dict[str, TensorComparison] = field(default_factory=dict)
    skipped: str | None = None  # why this candidate was not compared

    def decision_values(self, decision_names: list[str]) -> tuple[list[float], list[float]]:
        present = [n for n in decision_names if n in self.per_tensor]
        return [self.per_tensor[n].relative_distance for n in present], [self.per_tensor[n].cosine for n in present]

    def median_relative(self, decision_names: list[str]) -> float | None:
        values, _ = self.decision_values(decision_names)
        return statistics.median(values) if values else None

    def median_cosine(self, decision_names: list[str]) -> float | None:
        _, values = self.decision_values(decision_names)
        return statistics.median(values) if values else None

    def derived(self, decision_names: list[str]) -> bool:
        cosine = self.median_cosine(decision_names)
        return cosine is not None and cosine >= DERIVED_COSINE


def shape_mismatch(sub: WeightIndex, base: WeightIndex) -> str | None:
    """Why `base` cannot be a candidate for `sub` (None when every matrix lines up)."""
    decision = [n for n in sub.names() if is_decision_tensor(sub, n)]
    missing = [n for n in decision if n not in base]
    if missing:
        return f"{len(missing)} of {len(decision)} weight matrices absent (e.g. {missing[0]})"
    different = [n for n in decision if sub.tensors[n].shape != base.tensors[n].shape]
    if different:
        name = different[0]
        return (
            f"{len(different)} weight matrices differ in shape "
            f"(e.g. {name}: {list(sub.tensors[name].shape)} vs {list(base.tensors[name].shape)})"
        )
    return None


def measure_candidate(sub: WeightIndex, name: str, base: WeightIndex) -> CandidateDistances:
    result = CandidateDistances(name)
    reason = shape_mismatch(sub, base)
    if reason:
        result.skipped = reason
        return result
    for tensor in sub.names():
        rows = comparable_rows(sub, base, tensor)
        if rows is not None:
            result.per_tensor[tensor] = compare_tensor(sub, base, tensor, rows)
    return result


def _wins(challenger: CandidateDistances, incumbent: CandidateDistances, names: list[str]) -> tuple[int, int]:
    shared = [n for n in names if n in challenger.per_tensor and n in incumbent.per_tensor]
    wins = sum(
        1 for n in shared if challenger.per_tensor[n].relative_distance < incumbent.per_tensor[n].relative_distance
    )
    return wins, len(shared)


def _median_ratio(challenger: CandidateDistances, incumbent: CandidateDistances, names: list[str]) -> float | None:
    ratios = []
    for n in names:
        if n in challenger.per_tensor and n in incumbent.per_tensor:
            denominator = incumbent.per_tensor[n].relative_distance
            numerator = challenger.per_tensor[n].relative_distance
            ratios.append(numerator / denominator if denominator > 0 else (1.0 if numerator == 0 else math.inf))
    return statistics.median(ratios) if ratios else None


def _rounded(value: float | None, digits: int = 5) -> float | None:
    if value is None or not math.isfinite(value):
        return None if value is None else (1e308 if value > 0 else -1e308)
    return round(value, digits)


def per_layer_rows(candidates: list[CandidateDistances], decision_names: list[str], all_names: list[str]) -> list[dict]:
    """One row per layer (median over its tensors) so a 70B model gives ~80 rows, not ~700."""
    compared = [c for c in candidates if c.skipped is None]
    groups: dict[str, list[str]] = {}
    for name in all_names:
        if any(name in c.per_tensor for c in compared):
            groups.setdefault(layer_key(name), []).append(name)
    rows = []
    for key in sorted(groups, key=layer_number):
        names = groups[key]
        matrices = [n for n in names if n in decision_names]
        used = matrices or names
        distances = []
        for candidate in compared:
            values = [candidate.per_tensor[n] for n in used if n in candidate.per_tensor]
            distances.append(
                {
                    "candidate": candidate.name,
                    "relative_distance": _rounded(statistics.median(v.relative_distance for v in values)) if values else None,
                    "cosine": _rounded(statistics.median(v.cosine for v in values)) if values else None,
                }
            )
        known = [d for d in distances if d["relative_distance"] is not None]
        rows.append(
            {
                "layer": key,
                "tensors": len(used),
                "decides": bool(matrices),
                "distances": distances,
                "nearest": min(known, key=lambda d: d["relative_distance"])["candidate"] if known else None,
            }
        )
    return rows


@dataclass
class BaseDecision:
    """Outcome of the nearest-base analysis; `as_dict` is what the report stores."""

    claimed: str | None
    nearest: str | None
    # with a claimed base: matches_claimed | other_base_nearer | not_derived | inconclusive;
    # without one: undeclared_base | no_known_base | no_candidates | inconclusive; registered_base when
    # the model is a registered known base itself whose weights derive from another known base
    verdict: str
    summary: str
    candidates: list[dict]
    per_layer: list[dict]
    challenger: dict | None = None
    siblings: list[dict] = field(default_factory=list)  # lineage.SiblingComparison.as_dict()

    def as_dict(self) -> dict:
        return {
            "claimed": self.claimed,
            "nearest": self.nearest,
            "verdict": self.verdict,
            "summary": self.summary,
            "candidates": self.candidates,
            "per_layer": self.per_layer,
            "challenger": self.challenger,
            "siblings": self.siblings,
            "thresholds": {
                "derived_min_median_cosine": DERIVED_COSINE,
                "consistency_fraction": CONSISTENCY_FRACTION,
                "clearly_nearer_max_ratio": CLEARLY_NEARER_RATIO,
            },
        }


def _candidate_rows(
    everyone: list[CandidateDistances], claimed: CandidateDistances | None, decision_names: list[str]
) -> list[dict]:
    """One summary row per base compared (the claimed one first), as the section lists them."""
    rows = []
    for candidate in everyone:
        wins, total = (
            _wins(candidate, claimed, decision_names) if claimed is not None and candidate is not claimed else (0, 0)
        )
        rows.append(
            {
                "name": candidate.name,
                "claimed": candidate is claimed,
                "skipped": candidate.skipped,
                "median_relative_distance": _rounded(candidate.median_relative(decision_names)),
                "median_cosine": _rounded(candidate.median_cosine(decision_names)),
                "derived": candidate.derived(decision_names) if candidate.skipped is None else False,
                "matrices_compared": len([n for n in decision_names if n in candidate.per_tensor]),
                "nearer_than_claimed_in": wins if claimed is not None and candidate is not claimed else None,
            }
        )
    return rows


def _sibling_summary(sibling: Any, claimed_name: str) -> str:
    return (
        f"The weights come from {sibling.challenger}, not from the claimed base {claimed_name}, a related "
        f"base (median relative distance between the two {sibling.gap:.4g}): along the line from "
        f"{sibling.challenger} to {claimed_name} they sit at {sibling.median_position():.3f} of the way "
        f"(0 = {sibling.challenger}, 1 = {claimed_name}), nearer {sibling.challenger} in "
        f"{sibling.nearer_challenger()} of {len(sibling.positions)} weight matrices."
    )


def _clearly_nearer_challenger(
    claimed: CandidateDistances,
    derived_others: list[CandidateDistances],
    decision_names: list[str],
    siblings: dict[str, Any],
) -> tuple[str, dict] | None:
    """(summary, evidence) for the first derived candidate clearly nearer than the claimed base:
    by the sibling rule (lineage.py) when both are related, else by the ratio rule."""
    claimed_r = claimed.median_relative(decision_names)
    for challenger in derived_others:
        sibling = siblings.get(challenger.name)
        if claimed.derived(decision_names) and sibling is not None and sibling.clearly_nearer(CONSISTENCY_FRACTION):
            return _sibling_summary(sibling, claimed.name), sibling.as_dict() | {"name": challenger.name}
        wins, total = _wins(challenger, claimed, decision_names)
        ratio = _median_ratio(challenger, claimed, decision_names)
        if total and wins / total >= CONSISTENCY_FRACTION and ratio is not None and ratio <= CLEARLY_NEARER_RATIO:
            evidence = {
                "name": challenger.name,
                "nearer_in": wins,
                "of": total,
                "median_ratio": _rounded(ratio),
                "median_relative_distance": _rounded(challenger.median_relative(decision_names)),
            }
            return (
                f"The weights are nearer to {challenger.name} than to the claimed base {claimed.name} in "
                f"{wins} of {total} weight matrices (median relative distance "
                f"{challenger.median_relative(decision_names):.4g} vs {claimed_r:.4g}).",
                evidence,
            )
    return None


def decide_base(
    sub: WeightIndex,
    claimed: CandidateDistances,
    others: list[CandidateDistances],
    siblings: dict[str, Any] | None = None,
) -> BaseDecision:
    """Which base the weights come from. `siblings`: challenger name -> lineage.SiblingComparison
    for derived challengers related to the claimed base (their own rule, lineage.py)."""
    names = sub.names()
    decision_names = [n for n in names if is_decision_tensor(sub, n)]
    everyone = [claimed, *others]
    compared = [c for c in everyone if c.skipped is None]
    candidate_rows = _candidate_rows(everyone, claimed, decision_names)
    layers = per_layer_rows(everyone, decision_names, names)
    ranked = sorted(
        (c for c in compared if c.median_relative(decision_names) is not None),
        key=lambda c: c.median_relative(decision_names),
    )
    # "Nearest" only among bases the weights are derived from: being least far from unrelated
    # models says nothing.
    derived_ranked = [c for c in ranked if c.derived(decision_names)]
    nearest = derived_ranked[0].name if derived_ranked else None
    derived_others = [c for c in derived_ranked if c is not claimed]

    sibling_rows = [sibling.as_dict() for sibling in (siblings or {}).values()]

    def build(verdict: str, summary: str, challenger: dict | None = None) -> BaseDecision:
        return BaseDecision(claimed.name, nearest, verdict, summary, candidate_rows, layers, challenger, sibling_rows)

    if not decision_names:
        return build("inconclusive", "The model has no weight matrices to compare with a base.")
    if claimed.skipped is not None:
        # Matrices of other shapes cannot come from fine-tuning the claimed base.
        elsewhere = f" They are derived from {derived_others[0].name}." if derived_others else ""
        return build(
            "not_derived",
            f"The weights cannot come from the claimed base {claimed.name}: {claimed.skipped}.{elsewhere}",
            {"name": derived_others[0].name} if derived_others else None,
        )

    claimed_cos = claimed.median_cosine(decision_names)
    claimed_r = claimed.median_relative(decision_names)
    clearer = _clearly_nearer_challenger(claimed, derived_others, decision_names, siblings or {})
    if clearer is not None:
        return build("other_base_nearer", *clearer)
    if not claimed.derived(decision_names):
        elsewhere = (
            f" They are derived from {derived_others[0].name} (median cosine "
            f"{derived_others[0].median_cosine(decision_names):.3f})."
            if derived_others
            else " No known candidate base is near them either."
        )
        return build(
            "not_derived",
            f"The weights are not derived from the claimed base {claimed.name}: median cosine "
            f"{claimed_cos:.3f} and median relative distance {claimed_r:.3g} over {len(decision_names)} weight "
            f"matrices, the values of independently trained models (a fine-tune has cosine near 1)." + elsewhere,
            {"name": derived_others[0].name} if derived_others else None,
        )
    undecided = (
        f" {nearest} is nearer by median distance, but not clearly: the weights sit between the two related "
        f"bases (see the sibling positions)."
        if nearest is not None and nearest != claimed.name
        else ""
    )
    return build(
        "matches_claimed",
        f"The weights are derived from the claimed base {claimed.name} (median relative distance "
        f"{claimed_r:.4g}, median cosine {claimed_cos:.4f}); no known candidate is clearly nearer." + undecided,
    )


def decide_unclaimed(sub: WeightIndex, others: list[CandidateDistances]) -> BaseDecision:
    """Which known base, if any, the weights of a model that claims no base come from.

    The same "derived" test as with a claimed base (median cosine over the weight matrices); the
    nearest derived candidate (smallest median relative distance) is named. Without any comparable
    candidate the lineage rests on what the model alone shows, and the verdict says so."""
    names = sub.names()
    decision_names = [n for n in names if is_decision_tensor(sub, n)]
    compared = [c for c in others if c.skipped is None]
    rows = _candidate_rows(others, None, decision_names)
    layers = per_layer_rows(others, decision_names, names)
    derived = sorted(
        (c for c in compared if c.derived(decision_names) and c.median_relative(decision_names) is not None),
        key=lambda c: c.median_relative(decision_names),
    )
    nearest = derived[0] if derived else None

    def build(verdict: str, summary: str, challenger: dict | None = None) -> BaseDecision:
        return BaseDecision(None, nearest.name if nearest else None, verdict, summary, rows, layers, challenger)

    if not decision_names:
        return build("inconclusive", "The model has no weight matrices to compare with a base.")
    if not compared:
        why = f" ({len(others)} listed, none of the same weight shapes)" if others else ""
        return build(
            "no_candidates",
            f"No base is claimed and no known base of the same weight shapes could be compared{why}: "
            "the lineage rests on the model alone (its tokens and configuration).",
        )
    if nearest is None:
        best = max(compared, key=lambda c: c.median_cosine(decision_names) or -1.0)
        return build(
            "no_known_base",
            f"No base is claimed, and the weights are not derived from any of the {len(compared)} known bases "
            f"of the same shapes (highest median cosine {best.median_cosine(decision_names):.3f}, with "
            f"{best.name}; a fine-tune has cosine near 1).",
        )
    r, cosine = nearest.median_relative(decision_names), nearest.median_cosine(decision_names)
    related = [c.name for c in derived[1:]]
    also = f" Also derived from the related known base(s) {', '.join(related)}, farther." if related else ""
    return build(
        "undeclared_base",
        f"No base is claimed, but the weights are derived from the known base {nearest.name} (median "
        f"relative distance {r:.4g}, median cosine {cosine:.4f} over {len(decision_names)} weight matrices)."
        + also,
        {"name": nearest.name, "median_relative_distance": _rounded(r), "median_cosine": _rounded(cosine),
         "also_derived_from": related},
    )
