"""Provenance: is the model what it says it is? (methods.md §4, §7)

`check_provenance(model_dir, base_dir, ...)` runs, on local directories only (the pipeline has
already pinned and fetched them), with or without a claimed base:

1. per-tensor weight distance to the claimed base (if any) and to every candidate base of the
   same shape (the --candidate sources and the registered KnownBase rows), and the decision which
   base the weights come from (distance.py; sibling bases, one continued from the other, by
   lineage.py). Without a claimed base the nearest base the weights derive from is named and an
   undeclared lineage is flagged (warning), unless the model is itself a registered known base
   (`registered_as`: then it is reported, info); with no comparable candidate the verdict says so;
2. config and tokenizer diff against the claimed base, else against the nearest base (configdiff.py);
3. the LoRA signature of the delta to the base the weights come from (lowrank.py);
4. untrained token rows: tokens added beyond that base's vocabulary (tokens.py), and, from the
   model alone, the tokens its tokenizer uses (chat template, declared special tokens), each
   finding confirmed against the base when there is one;
5. hygiene facts, taken from intake (verification/intake.py), not recomputed.

The section's status is "ok" whenever these ran: a model with nothing to compare with (trained
from scratch, or of a shape no registered base has) is complete with the model-alone checks.
Weights are streamed one tensor (or row block) at a time; at no point are two models, or even one,
held in memory. The returned section is plain JSON (per-layer rows, no tensors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from verification.provenance import configdiff, distance, lineage, lowrank, tokens
from verification.provenance.weights import ProvenanceInputError, WeightIndex

SECTION_VERSION = 2
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
    sub: WeightIndex, base_dir: Path | None, base_name: str | None, candidates: dict[str, Path | str]
) -> tuple[dict[str, WeightIndex], list[distance.CandidateDistances]]:
    """Indexes of usable candidates; unusable ones come back as skipped entries, never as errors."""
    indexes: dict[str, WeightIndex] = {}
    skipped: list[distance.CandidateDistances] = []
    claimed_path = base_dir.resolve() if base_dir is not None else None
    own_path = sub.model_dir.resolve()
    for name, directory in candidates.items():
        path = Path(directory)
        if name == base_name or path.resolve() in (claimed_path, own_path):
            continue  # the claimed base is compared once; the model never with its own files
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


def _untrained_flag(
    with_base: tokens.NewTokenReport | None, alone: tokens.UsedTokenReport
) -> dict[str, Any] | None:
    """One untrained_tokens flag for both analyses: warning when a token is untrained in this
    model's own doing (added beyond the base, or rewritten, or no base to tell), info when every
    finding was untrained in its base already."""
    named = {entry["id"] for entry in with_base.untrained} if with_base else set()
    extra = [e for e in alone.untrained if e["id"] not in named]
    own = [e for e in extra if e.get("confirmed") != "inherited"]
    if with_base and with_base.untrained:
        flag = _tokens_flag(with_base)
        if own:
            flag["summary"] += " Also untrained among the tokens the tokenizer uses: " + ", ".join(
                e["token"] for e in own[:10]
            ) + "."
        flag["evidence"]["used_tokens"] = extra[:200]
        return flag
    if not extra:
        return None
    shown = ", ".join(e["token"] for e in extra[:10]) + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
    if own:
        summary = (
            f"{len(own)} of the {len(alone.checked)} tokens the tokenizer uses (its chat template and declared "
            f"special tokens) have untrained embedding/lm_head rows: {shown}."
        )
        return _flag("untrained_tokens", "warning", summary, {"used_tokens": extra[:200]})
    summary = (
        f"{len(extra)} tokens the tokenizer uses have untrained rows, as in the base they come from: {shown}."
    )
    return _flag("untrained_tokens", "info", summary, {"used_tokens": extra[:200]})


def _undeclared_flag(decision: distance.BaseDecision, claimed_training: str | None) -> dict[str, Any]:
    evidence = {
        "claimed_base": None,
        "claimed_training": claimed_training,
        "nearest": decision.nearest,
        "verdict": decision.verdict,
        "challenger": decision.challenger,
        "candidates": decision.candidates,
        "per_layer": decision.per_layer,
    }
    return _flag("base_model_mismatch", "warning", decision.summary, evidence)


def _registered_base(decision: distance.BaseDecision, registered_as: str) -> distance.BaseDecision:
    """The decision for a registered known base submitted as itself (same repo id and pinned sha
    as the maintainers' row) whose weights derive from another known base: its lineage is the
    registry's to declare, so it is reported as evidence, not as an undeclared lineage."""
    summary = (
        f"This model is the registered known base {registered_as} (the repository and revision the "
        f"maintainers registered); it was not compared with itself. "
        + decision.summary.replace("No base is claimed, but the weights", "Its weights", 1)
    )
    return dataclasses.replace(decision, verdict="registered_base", summary=summary)


def _lineage_flags(
    decision: distance.BaseDecision, base_name: str | None, claimed_training: str | None, registered_as: str | None
) -> tuple[distance.BaseDecision, list[dict[str, Any]]]:
    """The lineage flags of a decision, and the decision as the report states it."""
    if decision.verdict in ("other_base_nearer", "not_derived"):
        return decision, [_mismatch_flag(decision, base_name or "")]
    if decision.verdict != "undeclared_base":
        return decision, []
    if registered_as is None:
        return decision, [_undeclared_flag(decision, claimed_training)]
    decision = _registered_base(decision, registered_as)
    flag = _undeclared_flag(decision, claimed_training)
    flag["severity"] = "info"
    flag["evidence"]["registered_as"] = registered_as
    return decision, [flag]


def check_provenance(
    model_dir: Path | str,
    base_dir: Path | str | None,
    *,
    candidates: dict[str, Path | str] | None = None,
    claimed_training: str | None = None,
    base_name: str | None = None,
    intake: dict[str, Any] | None = None,
    max_lora_matrices: int = DEFAULT_MAX_LORA_MATRICES,
    threads: int | None = 1,
    registered_as: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(section, flags) for the report. Raises ProvenanceInputError when the submitted model or the
    claimed base cannot be read (no directory, no config, no safetensors); an unreadable *candidate*
    is recorded as skipped instead. Without a claimed base (`base_dir` None) the model is compared
    with the candidates alone. `threads`: torch intra-op threads for the check (None: as is).
    `registered_as`: the registered known base this model is (the caller established repo id and
    pinned sha, never a name alone); that candidate is not compared, and a lineage from another
    known base is reported as information instead of an undeclared lineage."""
    if base_dir is not None and not base_name:
        raise ValueError("a claimed base directory needs its name")
    if registered_as is not None:
        candidates = {name: path for name, path in (candidates or {}).items() if name != registered_as}
    with torch_threads(threads):
        return _check(
            Path(model_dir), None if base_dir is None else Path(base_dir), candidates or {}, claimed_training,
            base_name, intake, max_lora_matrices, registered_as,
        )


def _lineage(
    sub: WeightIndex, base: WeightIndex | None, base_name: str | None, candidates: dict[str, Path | str]
) -> tuple[distance.BaseDecision, dict[str, WeightIndex]]:
    """The nearest-base decision and every usable index by name (the claimed base first)."""
    base_dir = base.model_dir if base is not None else None
    other_indexes, skipped = _load_candidates(sub, base_dir, base_name, candidates)
    others = [distance.measure_candidate(sub, name, index) for name, index in other_indexes.items()]
    if base is None or base_name is None:
        return distance.decide_unclaimed(sub, others + skipped), other_indexes
    claimed = distance.measure_candidate(sub, base_name, base)
    decision_names = [n for n in sub.names() if distance.is_decision_tensor(sub, n)]
    siblings = {}
    if claimed.skipped is None and claimed.derived(decision_names):
        for other in others:
            if other.skipped is None and other.derived(decision_names):
                siblings[other.name] = lineage.compare_siblings(
                    sub, base, other_indexes[other.name], claimed, other, decision_names
                )
    decision = distance.decide_base(sub, claimed, others + skipped, siblings)
    return decision, {base_name: base, **other_indexes}


def _check(
    model_dir: Path,
    base_dir: Path | None,
    candidates: dict[str, Path | str],
    claimed_training: str | None,
    base_name: str | None,
    intake: dict[str, Any] | None,
    max_lora_matrices: int,
    registered_as: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sub = WeightIndex(model_dir)
    base = WeightIndex(base_dir) if base_dir is not None else None
    decision, indexes = _lineage(sub, base, base_name, candidates)
    decision, flags = _lineage_flags(decision, base_name, claimed_training, registered_as)

    reference_name = _reference_base(decision, base_name) if base_name else decision.nearest
    # The diffs and the delta analyses go against the base the weights come from; the config diff
    # against the claimed base when there is one (that is what the claim says).
    diff_index = base if base is not None else indexes.get(reference_name or "")
    diff: list[dict[str, Any]] = []
    if diff_index is not None:
        diff = configdiff.config_diff(configdiff.read_config(model_dir), configdiff.read_config(diff_index.model_dir))
        diff += configdiff.tokenizer_diff(model_dir, diff_index.model_dir)
    else:
        configdiff.read_config(model_dir)  # a model without a config is refused, base or not

    reference = indexes.get(reference_name) if reference_name is not None else None
    if reference is not None:
        lora = analyse_lora(sub, reference, max_lora_matrices)
    else:
        lora = lowrank.LoraVerdict("not_analysed", None, "not analysed: no known base the weights derive from", [], 0, 0)
    if lora.verdict == "low_rank" and (claimed_training or "").lower() == "full":
        flags.append(_lora_flag(lora, reference_name or base_name or ""))

    token_base = reference if reference is not None else base
    new_token_report = (
        tokens.check_new_tokens(sub, token_base, model_dir, token_base.model_dir) if token_base is not None else None
    )
    used_report = tokens.check_used_tokens(sub, model_dir)
    if token_base is not None:
        tokens.confirm_against_base(used_report, sub, token_base, token_base.model_dir)
    untrained = _untrained_flag(new_token_report, used_report)
    if untrained is not None:
        flags.append(untrained)

    section = {
        "status": "ok",
        "version": SECTION_VERSION,
        "claimed_base": base_name,
        "claimed_training": claimed_training,
        "registered_as": registered_as,
        "compared_with": reference_name,
        "config_diff": diff,
        "config_diff_against": base_name or reference_name,
        "weights": decision.as_dict(),
        "lora": {**lora.as_dict(), "base": reference_name},
        "new_tokens": (
            {**new_token_report.as_dict(), "base": reference_name or base_name}
            if new_token_report is not None
            else {"added": [], "n_added": 0, "untrained": [], "note": "no base to compare the vocabulary with", "base": None}
        ),
        "used_tokens": used_report.as_dict(),
        "hygiene": hygiene_facts(model_dir, intake),
        "flags": [f["kind"] for f in flags],
    }
    return section, flags

