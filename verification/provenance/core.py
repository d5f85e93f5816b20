"""Provenance: is the model what it says it is? (methods.md §4)

`check_provenance(model_dir, base_dir, ...)` runs, on local directories only (the pipeline has
already pinned and fetched them):

1. config and tokenizer diff against the claimed base (configdiff.py);
2. per-tensor weight distance to the claimed base and to every candidate base of the same shape,
   and the decision which base the weights come from (distance.py);
3. the LoRA signature of the delta to that base (lowrank.py);
4. rows of tokens added beyond the base vocabulary left at initialisation (tokens.py);
5. hygiene facts, taken from intake (verification/intake.py), not recomputed.

Weights are streamed one tensor (or row block) at a time; at no point are two models, or even one,
held in memory. The returned section is plain JSON (per-layer rows, no tensors).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from verification.provenance import configdiff, distance, lowrank, tokens
from verification.provenance.weights import ProvenanceInputError, WeightIndex

SECTION_VERSION = 1
# Largest number of weight matrices whose delta is decomposed: all matrices of evenly spaced
# layers beyond it. A LoRA targets the same modules in every layer, so a sample of layers shows it.
DEFAULT_MAX_LORA_MATRICES = 32


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with `count` intra-op threads, restoring the previous setting afterwards.

    Why one by default: the work here is streamed reductions over 1M-element slices and small
    SVDs, where the thread pools' wake-ups and spinning cost far more than they save. Measured on
    the 1.08 GB benchmark (performance/provenance_memory.py, 2-core machine): 7.8 s CPU / 36 s wall
    with one thread, 83.5 s CPU / 98 s wall with torch's default of two."""
    import torch

    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _flag(kind: str, severity: str, summary: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "benchmark": None, "summary": summary, "evidence": evidence}


def _load_candidates(
    sub: WeightIndex, base_dir: Path, base_name: str, candidates: dict[str, Path | str]
) -> tuple[dict[str, WeightIndex], list[distance.CandidateDistances]]:
    """Indexes of usable candidates; unusable ones come back as skipped entries, never as errors."""
    indexes: dict[str, WeightIndex] = {}
    skipped: list[distance.CandidateDistances] = []
    claimed_path = base_dir.resolve()
    for name, directory in candidates.items():
        path = Path(directory)
        if name == base_name or path.resolve() == claimed_path:
            continue  # the claimed base is always compared, once
        try:
            indexes[name] = WeightIndex(path)
        except ProvenanceInputError as exc:
            skipped.append(distance.CandidateDistances(name, skipped=str(exc)))
    return indexes, skipped


def _layer_sample(names: list[str], limit: int) -> list[str]:
    """All matrices of evenly spaced layers, at most `limit` matrices (deterministic)."""
    if len(names) <= limit:
        return names
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(distance.layer_key(name), []).append(name)
    keys = sorted(groups, key=distance.layer_number)
    per_layer = max(len(v) for v in groups.values())
    wanted_layers = max(1, limit // per_layer)
    step = len(keys) / wanted_layers
    chosen = sorted({keys[int(i * step)] for i in range(wanted_layers)}, key=distance.layer_number)
    return [name for key in chosen for name in groups[key]]


def analyse_lora(sub: WeightIndex, reference: WeightIndex, max_matrices: int) -> lowrank.LoraVerdict:
    matrices = [
        n for n in sub.names()
        if distance.is_decision_tensor(sub, n) and len(sub.tensors[n].shape) == 2
        and n in reference and reference.tensors[n].shape == sub.tensors[n].shape
    ]
    results = []
    for name in _layer_sample(matrices, max_matrices):
        weight = sub.load(name)
        base_weight = reference.load(name)
        results.append(lowrank.analyse_delta(name, weight, base_weight, sub.tensors[name].dtype))
        del weight, base_weight
    return lowrank.summarise(results, len(matrices))


def _reference_base(decision: distance.BaseDecision, claimed_name: str) -> str | None:
    """The base the weights were derived from, for the delta analyses; None when there is none."""
    if decision.verdict == "matches_claimed":
        return claimed_name
    if decision.verdict in ("other_base_nearer", "not_derived") and decision.challenger:
        return decision.challenger["name"]
    return None


def hygiene_facts(model_dir: Path, intake: dict[str, Any] | None) -> dict[str, Any]:
    """The intake's hygiene facts; computed through intake itself only when the caller has none."""
    if intake:
        return dict(intake)
    from verification.intake import IntakeRefused, inspect_source

    try:
        return inspect_source(str(model_dir.resolve())).hygiene()
    except IntakeRefused as exc:
        return {"error": exc.reason, "code": exc.code}


def _mismatch_flag(decision: distance.BaseDecision, base_name: str) -> dict[str, Any]:
    evidence = {
        "claimed_base": base_name,
        "nearest": decision.nearest,
        "verdict": decision.verdict,
        "challenger": decision.challenger,
        "candidates": decision.candidates,
        "per_layer": decision.per_layer,
    }
    return _flag("base_model_mismatch", "critical", decision.summary, evidence)


def _lora_flag(lora: lowrank.LoraVerdict, reference: str) -> dict[str, Any]:
    low = [m for m in lora.matrices if m.classification == "low_rank"]
    changed = [m for m in lora.matrices if m.classification != "unchanged"]
    summary = (
        f"Claimed a full fine-tune, but the weight delta to {reference} is low-rank: rank ≈ {lora.rank} in "
        f"{len(low)} of {len(changed)} changed weight matrices, the signature of a merged LoRA."
    )
    evidence = {
        "base": reference,
        "rank": lora.rank,
        "matrices": [m.as_dict() for m in low[:32]],
        "low_rank_matrices": len(low),
        "changed_matrices": len(changed),
    }
    return _flag("lora_merge", "info", summary, evidence)


def _tokens_flag(report: tokens.NewTokenReport) -> dict[str, Any]:
    names = [entry["token"] for entry in report.untrained]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    summary = (
        f"{len(names)} of {len(report.added)} tokens added beyond the base vocabulary have untrained "
        f"embedding/lm_head rows: {shown}."
    )
    return _flag("untrained_tokens", "warning", summary, {"tokens": report.untrained[:200]})


def check_provenance(
    model_dir: Path | str,
    base_dir: Path | str,
    *,
    candidates: dict[str, Path | str] | None = None,
    claimed_training: str | None = None,
    base_name: str,
    intake: dict[str, Any] | None = None,
    max_lora_matrices: int = DEFAULT_MAX_LORA_MATRICES,
    threads: int | None = 1,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(section, flags) for the report. Raises ProvenanceInputError when the submitted model or the
    claimed base cannot be read (no directory, no config, no safetensors); an unreadable *candidate*
    is recorded as skipped instead. `threads`: torch intra-op threads for the check (None: as is)."""
    with torch_threads(threads):
        return _check(
            Path(model_dir), Path(base_dir), candidates or {}, claimed_training, base_name, intake, max_lora_matrices
        )


def _check(
    model_dir: Path,
    base_dir: Path,
    candidates: dict[str, Path | str],
    claimed_training: str | None,
    base_name: str,
    intake: dict[str, Any] | None,
    max_lora_matrices: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sub = WeightIndex(model_dir)
    base = WeightIndex(base_dir)
    diff = configdiff.config_diff(configdiff.read_config(model_dir), configdiff.read_config(base_dir))
    diff += configdiff.tokenizer_diff(model_dir, base_dir)

    other_indexes, skipped = _load_candidates(sub, base_dir, base_name, candidates)
    claimed = distance.measure_candidate(sub, base_name, base)
    others = [distance.measure_candidate(sub, name, index) for name, index in other_indexes.items()] + skipped
    decision = distance.decide_base(sub, claimed, others)

    flags: list[dict[str, Any]] = []
    if decision.verdict in ("other_base_nearer", "not_derived"):
        flags.append(_mismatch_flag(decision, base_name))

    reference_name = _reference_base(decision, base_name)
    all_indexes = {base_name: base, **other_indexes}
    if reference_name is not None:
        reference = all_indexes[reference_name]
        reference_dir = reference.model_dir
        lora = analyse_lora(sub, reference, max_lora_matrices)
    else:
        reference_dir = base_dir
        lora = lowrank.LoraVerdict("not_analysed", None, "not analysed: no known base the weights derive from", [], 0, 0)
    if lora.verdict == "low_rank" and (claimed_training or "").lower() == "full":
        flags.append(_lora_flag(lora, reference_name or base_name))

    new_token_report = tokens.check_new_tokens(sub, all_indexes.get(reference_name, base), model_dir, reference_dir)
    if new_token_report.untrained:
        flags.append(_tokens_flag(new_token_report))

    section = {
        "status": "ok",
        "version": SECTION_VERSION,
        "claimed_base": base_name,
        "claimed_training": claimed_training,
        "compared_with": reference_name,
        "config_diff": diff,
        "weights": decision.as_dict(),
        "lora": {**lora.as_dict(), "base": reference_name},
        "new_tokens": {**new_token_report.as_dict(), "base": reference_name or base_name},
        "hygiene": hygiene_facts(model_dir, intake),
        "flags": [f["kind"] for f in flags],
    }
    return section, flags
