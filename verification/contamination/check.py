"""`check_contamination`: the report's `contamination` section and its flags (methods.md §3).

What it needs
- `model_dir`, `base_dir`: local snapshot directories (config, weights, tokenizer) of the submitted
  model and of its claimed base (`base_dir=None` when there is no base: every method then falls
  back to absolute thresholds and says so). The models are loaded with transformers, one at a
  time (never both in memory), on CUDA when present, else CPU.
- `datasets_dir`: the shared datasets (GSM8K test/train, the Skywork reference set).
- `limit`: the run's --limit; the probes read the first `limit` items of each public benchmark,
  i.e. the items the run scored (None = all, which on CPU is slow for big models).
- `public_outcomes`: {slug: outcome or {"model": outcome, "base": outcome}} for the public
  benchmarks verified; an outcome is a list of per-item 0/1 scores, {"n", "correct"} (or "k", "p",
  "measured" in points) or an object with `.n`/`.measured`. Its keys also name the benchmarks to
  probe (default: gsm8k).
- `heldout_outcomes`: same shape for held-out sets (gsm_fresh, private sets); each is compared with
  its public counterpart: gsm_fresh → gsm8k, a private set → the counterpart recorded with it
  (or an explicit "public" key in the entry). Private sets only ever contribute aggregates.
- `seed`: the gsm_fresh seed recorded with the run (Min-K%++'s unseen items are drawn from it).
- `reference_size`: texts drawn from the Skywork reference set and from GSM8K train (default:
  max(items probed, 200), at most 706).

Decision rules (ours, documented on the page):
- completion fires on a benchmark when ≥ 3 items are reproduced, the model's rate exceeds the
  base's by ≥ 5 points, and the one-sided exact McNemar p < 0.01.
- min_k_pp fires when benchmark items score higher than unseen gsm_fresh items after subtracting
  the base's per-item score (one-sided Mann–Whitney p < 0.01, AUC ≥ 0.65); without a base the
  model's own scores are compared.
- skywork fires when Δ1 < −0.10 or Δ2 > 0.15 (beyond 2 bootstrap SEs). With a base, on the
  excess over the base's own Δ (a base already trained on GSM8K-like text has its own offsets),
  and the Δ1 rule then also needs the test texts to have become cheaper than the train texts
  (excess Δ2 < −0.10): an honest fine-tune on GSM8K-like text moves both GSM8K splits away from
  the reference set alike, a test leak moves only the test split.
- heldout_gap fires when public − held-out accuracy exceeds the base's own gap by ≥ 5 points at
  z ≥ 2 (without a base: the raw gap, reported with lower severity since fresh problems may simply
  be harder).
- A `contamination` flag needs at least two methods firing on the same benchmark ("the evidence
  agrees"): warning with two, critical with three or more. heldout_gap also raises its own flag.

Nothing from a private set other than its aggregates enters the section, the flags or the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verification import private_sets
from verification.benchmarks import gsm_fresh
from verification.contamination import items as probe_items
from verification.contamination import stats
from verification.contamination.lm import ProbeModel, ProbeModelError
from verification.contamination.probes import Completion, completion_probe, min_k_pp_scores, text_losses

logger = logging.getLogger(__name__)

SECTION_SCHEMA = "verity.contamination/1"

COMPLETION_MIN_REPRODUCED = 3
COMPLETION_MIN_EXCESS = 0.05
COMPLETION_MAX_P = 0.01
MINKPP_MAX_P = 0.01
MINKPP_MIN_AUC = 0.65
MINKPP_MIN_UNSEEN = 30
SKYWORK_DELTA1_MAX = -0.10
SKYWORK_DELTA2_MIN = 0.15
SKYWORK_MIN_REF = 200
HELDOUT_MIN_GAP = 0.05
HELDOUT_MIN_Z = 2.0
REPRODUCED_SHOWN = 20
SHOWN_CHARS = 300

MINKPP_BENCHMARK = "gsm8k"  # the public benchmark with a same-style unseen set (gsm_fresh)
SKYWORK_BENCHMARK = "gsm8k"


# --- the probe plan, run once per model --------------------------------------------------------


@dataclass
class ProbePlan:
    completion: dict[str, list[str]] = field(default_factory=dict)  # slug -> questions
    minkpp_members: list[str] = field(default_factory=list)
    minkpp_unseen: list[str] = field(default_factory=list)
    skywork_test: list[str] = field(default_factory=list)
    skywork_ref: list[str] = field(default_factory=list)
    skywork_train: list[str] = field(default_factory=list)

    def digest(self) -> str:
        payload = json.dumps(self.__dict__, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class ProbeResults:
    completion: dict[str, list[Completion]] = field(default_factory=dict)
    minkpp_members: list[float] = field(default_factory=list)
    minkpp_unseen: list[float] = field(default_factory=list)
    skywork: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # set -> [(nll, tokens)]


# Results per (model fingerprint, plan): a base probed for several fine-tunes in one worker
# process is loaded and probed once.
_RESULTS_CACHE: dict[tuple[str, str], ProbeResults] = {}
_CACHE_LIMIT = 8


def model_fingerprint(model_dir: str | Path) -> str:
    """Path plus size and mtime of every file: a changed snapshot is probed again."""
    root = Path(model_dir).resolve()
    digest = hashlib.sha256(str(root).encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def run_probes(model_dir: str | Path, plan: ProbePlan) -> ProbeResults:
    key = (model_fingerprint(model_dir), plan.digest())
    if key in _RESULTS_CACHE:
        return _RESULTS_CACHE[key]
    model = ProbeModel(model_dir)
    try:
        results = ProbeResults()
        for slug, questions in plan.completion.items():
            results.completion[slug] = completion_probe(model, questions)
        if plan.minkpp_members and plan.minkpp_unseen:
            results.minkpp_members = min_k_pp_scores(model, plan.minkpp_members)
            results.minkpp_unseen = min_k_pp_scores(model, plan.minkpp_unseen)
        for name in ("test", "ref", "train"):
            texts = getattr(plan, f"skywork_{name}")
            if texts:
                results.skywork[name] = [(l.nll_sum, l.n_tokens) for l in text_losses(model, texts)]
    finally:
        model.close()
    if len(_RESULTS_CACHE) >= _CACHE_LIMIT:
        _RESULTS_CACHE.pop(next(iter(_RESULTS_CACHE)))
    _RESULTS_CACHE[key] = results
    return results


# --- building the plan ----------------------------------------------------------------------


def _public_slugs(benchmarks: Sequence[str] | None, public_outcomes: Mapping[str, Any] | None) -> list[str]:
    slugs = list(benchmarks) if benchmarks else list(public_outcomes or {}) or ["gsm8k"]
    # Held-out sets are never probed item by item: their items must not appear anywhere.
    return [s for s in dict.fromkeys(slugs) if s != gsm_fresh.SLUG and not private_sets.is_private(s)]


def build_plan(
    slugs: Sequence[str], *, datasets_dir: Path, limit: int | None, seed: int, skipped: dict[str, str],
    reference_size: int | None = None,
) -> tuple[ProbePlan, dict[str, list[probe_items.ProbeItem]]]:
    plan = ProbePlan()
    loaded: dict[str, list[probe_items.ProbeItem]] = {}
    for slug in slugs:
        try:
            loaded[slug] = probe_items.benchmark_items(slug, datasets_dir, limit)
        except (probe_items.ProbeDataUnavailable, FileNotFoundError) as exc:
            skipped[slug] = str(exc)
            continue
        plan.completion[slug] = [item.question for item in loaded[slug]]
    gsm = loaded.get("gsm8k")
    if gsm:
        n_unseen = min(max(len(gsm), MINKPP_MIN_UNSEEN), 400)
        plan.minkpp_members = [item.question for item in gsm]
        plan.minkpp_unseen = [item.question for item in probe_items.fresh_items(seed, n_unseen)]
        n_ref = min(706, reference_size or max(len(gsm), SKYWORK_MIN_REF))
        try:
            plan.skywork_ref = probe_items.skywork_reference(datasets_dir, n_ref, seed=seed)
            plan.skywork_train = [i.full_text for i in probe_items.gsm8k_train_sample(datasets_dir, n_ref, seed)]
            plan.skywork_test = [item.full_text for item in gsm]
        except probe_items.ProbeDataUnavailable as exc:
            skipped["skywork"] = str(exc)
    return plan, loaded


# --- evidence per method --------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def completion_evidence(
    slug: str, items: list[probe_items.ProbeItem], model: list[Completion], base: list[Completion] | None
) -> dict[str, Any]:
    model_hits = [c.reproduced for c in model]
    base_hits = [c.reproduced for c in base] if base is not None else None
    test = stats.paired_excess(model_hits, base_hits)
    excess = test.model_rate - (test.base_rate or 0.0)
    fired = (
        sum(model_hits) >= COMPLETION_MIN_REPRODUCED and excess >= COMPLETION_MIN_EXCESS and test.p_value < COMPLETION_MAX_P
    )
    reproduced = [
        {
            "index": item.index,
            "item_id": item.item_id,
            "prefix": _clip(c.prefix),
            "truth": _clip(c.truth),
            "output": _clip(c.output),
            "rouge_l": round(c.rouge_l, 3),
            "exact": c.exact,
            "base_reproduced": bool(base_hits[pos]) if base_hits is not None else None,
        }
        for pos, (item, c) in enumerate(zip(items, model))
        if c.reproduced
    ]
    return {
        "benchmark": slug,
        "n": test.n,
        "model_rate": test.model_rate,
        "base_rate": test.base_rate,
        "excess": excess,
        "model_rate_pct": 100.0 * test.model_rate,
        "base_rate_pct": None if test.base_rate is None else 100.0 * test.base_rate,
        "excess_pct": 100.0 * excess,
        "model_only": test.model_only,
        "base_only": test.base_only,
        "p_value": test.p_value,
        "fired": fired,
        "n_reproduced": len(reproduced),
        "reproduced": reproduced[:REPRODUCED_SHOWN],
        "mean_rouge_l": float(np.mean([c.rouge_l for c in model])) if model else 0.0,
    }


def minkpp_evidence(model: ProbeResults, base: ProbeResults | None) -> dict[str, Any]:
    own = stats.mann_whitney_greater(model.minkpp_members, model.minkpp_unseen)
    evidence: dict[str, Any] = {
        "benchmark": MINKPP_BENCHMARK,
        "unseen": gsm_fresh.SLUG,
        "k": 0.2,
        "model": own.as_dict(),
        "base": None,
        "delta": None,
    }
    decisive = own
    if base is not None and base.minkpp_members:
        evidence["base"] = stats.mann_whitney_greater(base.minkpp_members, base.minkpp_unseen).as_dict()
        member_delta = np.subtract(model.minkpp_members, base.minkpp_members)
        unseen_delta = np.subtract(model.minkpp_unseen, base.minkpp_unseen)
        decisive = stats.mann_whitney_greater(member_delta, unseen_delta)
        evidence["delta"] = decisive.as_dict()
    evidence["fired"] = decisive.p_value < MINKPP_MAX_P and decisive.auc >= MINKPP_MIN_AUC
    evidence["decided_on"] = "delta" if evidence["delta"] else "model"
    return evidence


def _losses(results: ProbeResults, seed: int) -> dict[str, stats.LossRatio]:
    return {
        name: stats.loss_ratio([x[0] for x in rows], [x[1] for x in rows], seed=seed)
        for name, rows in results.skywork.items()
    }


def _deltas(losses: dict[str, stats.LossRatio]) -> dict[str, float]:
    test, ref, train = losses["test"], losses["ref"], losses["train"]
    return {
        "L_test": test.loss, "L_ref": ref.loss, "L_train": train.loss,
        "delta1": test.loss - ref.loss, "delta2": test.loss - train.loss,
        "delta1_se": float(np.hypot(test.se, ref.se)), "delta2_se": float(np.hypot(test.se, train.se)),
        "n_test": test.n_texts, "n_ref": ref.n_texts, "n_train": train.n_texts,
    }


def skywork_evidence(model: ProbeResults, base: ProbeResults | None, seed: int) -> dict[str, Any]:
    own = _deltas(_losses(model, seed))
    evidence: dict[str, Any] = {"benchmark": SKYWORK_BENCHMARK, "model": own, "base": None, "excess": None}
    d1, d2 = own["delta1"], own["delta2"]
    se1, se2 = own["delta1_se"], own["delta2_se"]
    if base is not None and base.skywork:
        theirs = _deltas(_losses(base, seed))
        evidence["base"] = theirs
        d1, d2 = d1 - theirs["delta1"], d2 - theirs["delta2"]
        se1, se2 = float(np.hypot(se1, theirs["delta1_se"])), float(np.hypot(se2, theirs["delta2_se"]))
        evidence["excess"] = {"delta1": d1, "delta2": d2, "delta1_se": se1, "delta2_se": se2}
    if evidence["excess"] is None:
        # methods.md §3 as published: Δ1 < −0.10 or Δ2 > 0.15.
        fired_delta1 = d1 < SKYWORK_DELTA1_MAX and d1 < -2 * se1
    else:
        # With a base (ours): the test texts must have become cheaper than the reference set AND
        # than the same-distribution train texts. A fine-tune on GSM8K-like text moves the
        # reference set against both GSM8K splits alike (an excess Δ1 with no excess Δ2); only
        # a leak of the test texts separates test from train.
        fired_delta1 = d1 < SKYWORK_DELTA1_MAX and d1 < -2 * se1 and d2 < SKYWORK_DELTA1_MAX and d2 < -2 * se2
    fired_delta2 = d2 > SKYWORK_DELTA2_MIN and d2 > 2 * se2
    evidence["fired_delta1"] = bool(fired_delta1)
    evidence["fired_delta2"] = bool(fired_delta2)
    evidence["fired"] = bool(fired_delta1 or fired_delta2)
    return evidence


def _split_outcome(entry: Any) -> tuple[Any, Any]:
    if isinstance(entry, Mapping) and ("model" in entry or "base" in entry):
        return entry.get("model"), entry.get("base")
    return entry, None


def heldout_counterpart(slug: str, entry: Any) -> str | None:
    if isinstance(entry, Mapping) and entry.get("public"):
        return str(entry["public"])
    if slug == gsm_fresh.SLUG:
        return gsm_fresh.PUBLIC_COUNTERPART
    return private_sets.public_counterpart(slug)


def heldout_evidence(
    public_outcomes: Mapping[str, Any], heldout_outcomes: Mapping[str, Any]
) -> list[dict[str, Any]]:
    pairs = []
    for held_slug, entry in heldout_outcomes.items():
        public_slug = heldout_counterpart(held_slug, entry)
        if public_slug is None or public_slug not in public_outcomes:
            continue
        held_model, held_base = (stats.as_proportion(x) for x in _split_outcome(entry))
        pub_model, pub_base = (stats.as_proportion(x) for x in _split_outcome(public_outcomes[public_slug]))
        if not held_model or not pub_model or held_model.n == 0 or pub_model.n == 0:
            continue
        base_gap = stats.Gap(pub_base, held_base) if pub_base and held_base and pub_base.n and held_base.n else None
        did = stats.DiffInDiff(stats.Gap(pub_model, held_model), base_gap)
        fired = did.estimate >= HELDOUT_MIN_GAP and did.z >= HELDOUT_MIN_Z
        pairs.append({
            "public": public_slug,
            "heldout": held_slug,
            "private": private_sets.is_private(held_slug),
            **did.as_dict(),
            "fired": bool(fired),
            "with_base": base_gap is not None,
        })
    return pairs


# --- the entry point --------------------------------------------------------------------------


def _probe_safely(model_dir: Path | str, plan: ProbePlan, errors: list[dict[str, str]], role: str) -> ProbeResults | None:
    try:
        return run_probes(model_dir, plan)
    except ProbeModelError as exc:
        errors.append({"role": role, "error": str(exc)})
    except Exception as exc:  # a probe crash must not lose the rest of the report
        errors.append({"role": role, "error": f"{type(exc).__name__} while probing the {role} model"})
        logger.exception("contamination probes failed for the %s model", role)
    return None


def check_contamination(
    model_dir: str | Path | Any,
    base_dir: str | Path | None = None,
    *,
    datasets_dir: str | Path | None = None,
    limit: int | None = None,
    public_outcomes: Mapping[str, Any] | None = None,
    heldout_outcomes: Mapping[str, Any] | None = None,
    seed: int = 0,
    benchmarks: Sequence[str] | None = None,
    reference_size: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(section, flags): see the module docstring for inputs and decision rules.

    Also usable as the pipeline's registered check (verification.checks): called with a
    CheckContext as its only argument it returns ("contamination", section, flags)."""
    if _is_check_context(model_dir):
        return run_check(model_dir)  # type: ignore[return-value]
    if datasets_dir is None:
        raise ValueError("check_contamination needs datasets_dir")
    datasets_dir = Path(datasets_dir)
    public_outcomes = dict(public_outcomes or {})
    heldout_outcomes = dict(heldout_outcomes or {})
    skipped: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    slugs = _public_slugs(benchmarks, public_outcomes)
    plan, loaded = build_plan(
        slugs, datasets_dir=datasets_dir, limit=limit, seed=seed, skipped=skipped, reference_size=reference_size
    )
    logger.info(
        "contamination probes: %d benchmark(s), %d item(s), base %s",
        len(loaded), sum(len(v) for v in loaded.values()), "yes" if base_dir else "no",
    )

    model_results = _probe_safely(model_dir, plan, errors, "submitted")
    base_results = _probe_safely(base_dir, plan, errors, "base") if base_dir else None

    methods: dict[str, Any] = {}
    if model_results is not None:
        methods["completion"] = {
            "by_benchmark": {
                slug: completion_evidence(slug, loaded[slug], model_results.completion[slug],
                                          base_results.completion.get(slug) if base_results else None)
                for slug in plan.completion
            }
        }
        if plan.minkpp_members:
            methods["min_k_pp"] = minkpp_evidence(model_results, base_results)
        if model_results.skywork.keys() >= {"test", "ref", "train"}:
            methods["skywork"] = skywork_evidence(model_results, base_results, seed)
    methods["heldout_gap"] = {"pairs": heldout_evidence(public_outcomes, heldout_outcomes)}

    fired_by_benchmark = _fired_by_benchmark(methods)
    for name, method in methods.items():
        method["status"] = _status(name, method)
    flags = _flags(methods, fired_by_benchmark)
    fired = sorted({m for ms in fired_by_benchmark.values() for m in ms})
    section = {
        "schema": SECTION_SCHEMA,
        "status": "ok" if model_results is not None else "error",
        "seed": seed,
        "limit": limit,
        "base_compared": base_results is not None,
        "benchmarks_probed": {slug: len(items) for slug, items in loaded.items()},
        "skipped": skipped,
        "errors": errors,
        "methods": methods,
        "fired": fired,
        "fired_by_benchmark": {k: sorted(v) for k, v in fired_by_benchmark.items()},
        "flagged": any(f["kind"] == "contamination" for f in flags),
        "summary": _summary(fired_by_benchmark, flags, errors),
        "thresholds": thresholds(),
    }
    logger.info("contamination: methods fired %s, %d flag(s)", fired or "none", len(flags))
    return section, flags


def thresholds() -> dict[str, Any]:
    return {
        "completion": {"rouge_l": 0.8, "min_reproduced": COMPLETION_MIN_REPRODUCED,
                       "min_excess": COMPLETION_MIN_EXCESS, "max_p": COMPLETION_MAX_P},
        "min_k_pp": {"k": 0.2, "max_p": MINKPP_MAX_P, "min_auc": MINKPP_MIN_AUC},
        "skywork": {"delta1_below": SKYWORK_DELTA1_MAX, "delta2_above": SKYWORK_DELTA2_MIN},
        "heldout_gap": {"min_gap": HELDOUT_MIN_GAP, "min_z": HELDOUT_MIN_Z},
    }


def _fired_by_benchmark(methods: Mapping[str, Any]) -> dict[str, set[str]]:
    fired: dict[str, set[str]] = {}
    for slug, evidence in methods.get("completion", {}).get("by_benchmark", {}).items():
        if evidence["fired"]:
            fired.setdefault(slug, set()).add("completion")
    for name in ("min_k_pp", "skywork"):
        if methods.get(name, {}).get("fired"):
            fired.setdefault(methods[name]["benchmark"], set()).add(name)
    for pair in methods.get("heldout_gap", {}).get("pairs", []):
        if pair["fired"]:
            fired.setdefault(pair["public"], set()).add("heldout_gap")
    return fired


def _status(name: str, method: Mapping[str, Any]) -> str:
    if name == "completion":
        entries = list(method["by_benchmark"].values())
    elif name == "heldout_gap":
        entries = list(method["pairs"])
    else:
        entries = [method]
    if not entries:
        return "not_run"
    return "fired" if any(e["fired"] for e in entries) else "clear"


def _method_numbers(name: str, methods: Mapping[str, Any], slug: str) -> str:
    if name == "completion":
        e = methods["completion"]["by_benchmark"][slug]
        base = f" vs base {100 * e['base_rate']:.1f}%" if e["base_rate"] is not None else ""
        return f"completion probe reproduced {e['n_reproduced']}/{e['n']} question halves ({100 * e['model_rate']:.1f}%{base}, p={e['p_value']:.2g})"
    if name == "min_k_pp":
        e = methods["min_k_pp"]
        d = e["delta"] or e["model"]
        return f"Min-K%++ ranks {slug} items above fresh items (AUC {d['auc']:.2f}, p={d['p_value']:.2g})"
    if name == "skywork":
        e = methods["skywork"]
        m = e["model"]
        return f"Skywork Δ1={m['delta1']:+.3f}, Δ2={m['delta2']:+.3f}" + (
            f" (excess over base Δ1 {e['excess']['delta1']:+.3f}, Δ2 {e['excess']['delta2']:+.3f})" if e["excess"] else ""
        )
    pairs = [p for p in methods["heldout_gap"]["pairs"] if p["public"] == slug and p["fired"]]
    return "; ".join(
        f"held-out gap {100 * p['model']['gap']:.1f} points vs {p['heldout']}"
        + (f" (DiD {100 * p['estimate']:.1f} ± {100 * p['se']:.1f})" if p["with_base"] else "")
        for p in pairs
    )


SEVERITY_ORDER = ("info", "warning", "critical")


def _heldout_severity(pair: Mapping[str, Any]) -> str:
    """Without a base a raw gap may just mean fresh problems are harder: info only."""
    if not pair["with_base"]:
        return "info"
    return "critical" if pair["z"] >= 3 else "warning"


def _flags(methods: Mapping[str, Any], fired_by_benchmark: Mapping[str, set[str]]) -> list[dict[str, Any]]:
    flags = []
    for slug, fired in sorted(fired_by_benchmark.items()):
        numbers = {name: _method_numbers(name, methods, slug) for name in sorted(fired)}
        if len(fired) >= 2:
            evidence: dict[str, Any] = {"methods": sorted(fired), "numbers": numbers}
            if "completion" in fired:
                evidence["reproduced"] = methods["completion"]["by_benchmark"][slug]["reproduced"]
            flags.append({
                "kind": "contamination",
                "severity": "critical" if len(fired) >= 3 else "warning",
                "benchmark": slug,
                "summary": f"{slug}: {len(fired)} contamination methods agree — " + "; ".join(numbers.values()),
                "evidence": evidence,
            })
        if "heldout_gap" in fired:
            pairs = [p for p in methods["heldout_gap"]["pairs"] if p["public"] == slug and p["fired"]]
            severity = max((_heldout_severity(p) for p in pairs), key=SEVERITY_ORDER.index)
            flags.append({
                "kind": "heldout_gap",
                "severity": severity,
                "benchmark": slug,
                "summary": f"{slug}: {numbers['heldout_gap']}",
                "evidence": {"pairs": pairs},
            })
    return flags


def _summary(fired: Mapping[str, set[str]], flags: list[dict[str, Any]], errors: list[dict[str, str]]) -> str:
    parts = []
    if not fired:
        parts.append("No contamination method fired.")
    for slug, methods in sorted(fired.items()):
        verdict = "flagged" if len(methods) >= 2 else "single method only, not flagged"
        parts.append(f"{slug}: {', '.join(sorted(methods))} fired ({verdict}).")
    if errors:
        parts.append(f"{len(errors)} probe error(s); see errors.")
    return " ".join(parts)


# --- the pipeline's check hook (verification.checks) ----------------------------------------------


def _is_check_context(value: Any) -> bool:
    return hasattr(value, "model") and hasattr(value, "benchmarks") and hasattr(value, "claims")


def gsm_fresh_seed(measurement: Mapping[str, Any] | None, options: Mapping[str, Any]) -> int:
    """The seed the run used for gsm_fresh (recorded in its dataset source), else options."""
    if "gsm_fresh_seed" in options:
        return int(options["gsm_fresh_seed"])
    source = (measurement or {}).get("dataset_source") or {}
    if isinstance(source, Mapping) and source.get("seed") is not None:
        return int(source["seed"])
    # Unknown: a fresh seed (recorded in the section) keeps the unseen items unseen.
    return gsm_fresh.new_seed()


def run_check(context: Any) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Adapter from verification.checks.CheckContext: public benchmarks and held-out sets are
    told apart by slug (gsm_fresh, private_*), each paired with the base's measurement."""
    if context.model.path is None:
        return "contamination", {"schema": SECTION_SCHEMA, "status": "skipped",
                                 "reason": "the model's files are not available to this worker"}, []
    if context.datasets_dir is None:
        return "contamination", {"schema": SECTION_SCHEMA, "status": "skipped",
                                 "reason": "no datasets directory configured"}, []
    measured = dict(context.benchmarks or {})
    base_measured = dict(context.base_benchmarks or {})
    held = {s for s in measured if s == gsm_fresh.SLUG or private_sets.is_private(s)}

    def paired(slug: str) -> dict[str, Any]:
        return {"model": measured[slug], "base": base_measured.get(slug)}

    base_dir = context.base.path if context.base is not None else None
    section, flags = check_contamination(
        context.model.path,
        base_dir,
        datasets_dir=context.datasets_dir,
        limit=context.limit,
        public_outcomes={s: paired(s) for s in measured if s not in held},
        heldout_outcomes={s: paired(s) for s in sorted(held)},
        seed=gsm_fresh_seed(measured.get(gsm_fresh.SLUG), context.options or {}),
        reference_size=(context.options or {}).get("contamination_reference_size"),
    )
    return "contamination", section, flags
