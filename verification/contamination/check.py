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
- `seed`: the gsm_fresh seed recorded with the run (the train-split and reference samples are drawn
  from it).
- `reference_size`: texts drawn from the Skywork reference set and from GSM8K train (default:
  max(items probed, 200), at most 706).

Decision rules (ours; verification/METHODS_VERDICTS.md "Contamination"). Training on a
benchmark's *train* split (or on text like it) is legitimate, so every counted method compares
sets from the same distribution — GSM8K test items against GSM8K train items — or the model
against its claimed base, never real items against generated or differently written ones:
- completion fires on a benchmark when ≥ 3 test items are reproduced and, on GSM8K, the test rate
  exceeds the train-split rate by ≥ 5 points (one-sided Fisher p < 0.01); with a base, the model
  must also reproduce more test items than the base (one-sided exact McNemar p < 0.01, excess ≥ 5
  points) and, on GSM8K, also gain more over the base on test items than on train items
  (one-sided Mann–Whitney on per-item gains, p < 0.01). A benchmark with no train split counts
  only with a base (the base is then the control).
- min_k_pp fires when GSM8K test items score higher than GSM8K train items (one-sided Mann–Whitney
  p < 0.01, AUC ≥ 0.65); with a base, the per-item excess over the base's score must as well.
- skywork fires when Δ2 = L_test − L_train (L in nats per byte) is below zero beyond noise
  (Δ2 < −0.01 and Δ2 < −2.33 SE): train-split training makes Δ2 ≥ 0, only a leak makes the
  test texts cheaper. With a base, the excess Δ2 over the base's (paired bootstrap SEs) must be
  as well. Δ1 (against Skywork's reference set, written in another style) is reported, never
  decisive: any GSM8K-style training moves it.
- With a base every likelihood method needs both its own comparison and the difference in
  differences: the latter alone would flag an honest fine-tune that forgot part of what its base
  knew of the train split; the former alone, a leak inherited from the base.
- heldout_gap fires when public − held-out accuracy exceeds the base's own gap by ≥ 5 points at
  z ≥ 2 (without a base: the raw gap, reported with lower severity since fresh problems may simply
  be harder).
- A `contamination` flag needs at least two counted methods firing on the same benchmark ("the
  evidence agrees"): warning with two, critical with three or more. heldout_gap also raises its
  own flag. Each method's false-positive rate on honest tiny models, and its detection rate on
  planted leaks: performance/zoo_contamination_rates.py.

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
SKYWORK_DELTA1_MAX = -0.10  # reported only (methods.md §3's published Δ1 line)
SKYWORK_DELTA2_BELOW = -0.01  # nats per byte (about -0.03 per token at 3 bytes a token)
SKYWORK_Z = 2.33  # one-sided 1%
SKYWORK_MIN_REF = 200
CONTROL_MIN = 30  # train-split items compared with the test items (at least, at most)
CONTROL_MAX = 400
GAIN_MAX_P = 0.01
HELDOUT_MIN_GAP = 0.05
HELDOUT_MIN_Z = 2.0
REPRODUCED_SHOWN = 20
SHOWN_CHARS = 300

MINKPP_BENCHMARK = "gsm8k"  # the public benchmark whose train split is in the datasets
SKYWORK_BENCHMARK = "gsm8k"
TRAIN_SPLIT_BENCHMARKS = ("gsm8k",)


# --- the probe plan, run once per model --------------------------------------------------------


@dataclass
class ProbePlan:
    completion: dict[str, list[str]] = field(default_factory=dict)  # slug -> test questions
    train_questions: list[str] = field(default_factory=list)  # GSM8K train: completion and Min-K%++ controls
    minkpp_members: list[str] = field(default_factory=list)
    skywork_test: list[str] = field(default_factory=list)
    skywork_ref: list[str] = field(default_factory=list)
    skywork_train: list[str] = field(default_factory=list)

    def digest(self) -> str:
        payload = json.dumps(self.__dict__, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class ProbeResults:
    completion: dict[str, list[Completion]] = field(default_factory=dict)
    completion_train: list[Completion] = field(default_factory=list)
    minkpp_members: list[float] = field(default_factory=list)
    minkpp_controls: list[float] = field(default_factory=list)
    skywork: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # set -> [(nll, bytes)]


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
        if plan.train_questions:
            results.completion_train = completion_probe(model, plan.train_questions)
        if plan.minkpp_members and plan.train_questions:
            results.minkpp_members = min_k_pp_scores(model, plan.minkpp_members)
            results.minkpp_controls = min_k_pp_scores(model, plan.train_questions)
        for name in ("test", "ref", "train"):
            texts = getattr(plan, f"skywork_{name}")
            if texts:
                results.skywork[name] = [(l.nll_sum, l.n_bytes) for l in text_losses(model, texts)]
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
        n_ref = min(706, reference_size or max(len(gsm), SKYWORK_MIN_REF))
        try:
            # Same-distribution controls: GSM8K train items (a seeded sample, so a model cannot
            # know which train items it will be compared with).
            n_controls = min(max(len(gsm), CONTROL_MIN), CONTROL_MAX)
            plan.train_questions = [i.question for i in probe_items.gsm8k_train_sample(datasets_dir, n_controls, seed + 1)]
            plan.minkpp_members = [item.question for item in gsm]
            plan.skywork_ref = probe_items.skywork_reference(datasets_dir, n_ref, seed=seed)
            plan.skywork_train = [i.full_text for i in probe_items.gsm8k_train_sample(datasets_dir, n_ref, seed)]
            plan.skywork_test = [item.full_text for item in gsm]
        except probe_items.ProbeDataUnavailable as exc:
            skipped["skywork"] = str(exc)
    return plan, loaded


# --- evidence per method --------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _reproduced_rows(
    items: list[probe_items.ProbeItem], model: list[Completion], base_hits: list[bool] | None
) -> list[dict[str, Any]]:
    return [
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


def _train_comparison(
    model_hits: list[bool], train: list[Completion] | None, base_hits: list[bool] | None,
    base_train: list[Completion] | None,
) -> dict[str, Any] | None:
    """The same probe on GSM8K train items: a rate that only the test items reach is what
    train-split training cannot produce. With a base, per-item gains over the base (test vs
    train) make it a difference-in-differences."""
    if not train:
        return None
    train_hits = [c.reproduced for c in train]
    rate_test, rate_train = sum(model_hits) / len(model_hits), sum(train_hits) / len(train_hits)
    p_value = stats.fisher_greater(sum(model_hits), len(model_hits), sum(train_hits), len(train_hits))
    out: dict[str, Any] = {
        "n_train": len(train_hits), "train_rate": rate_train, "train_rate_pct": 100.0 * rate_train,
        "test_minus_train_pct": 100.0 * (rate_test - rate_train), "p_value": p_value, "gain_p_value": None,
        "passed": rate_test - rate_train >= COMPLETION_MIN_EXCESS and p_value < COMPLETION_MAX_P,
    }
    if base_hits is not None and base_train:
        gains_test = np.asarray(model_hits, dtype=float) - np.asarray(base_hits, dtype=float)
        gains_train = np.asarray(train_hits, dtype=float) - np.asarray([c.reproduced for c in base_train], dtype=float)
        gain = stats.mann_whitney_greater(gains_test, gains_train)
        out["gain_p_value"] = gain.p_value
        out["passed"] = out["passed"] and gain.p_value < GAIN_MAX_P and (
            float(gains_test.mean() - gains_train.mean()) >= COMPLETION_MIN_EXCESS
        )
    return out


def completion_evidence(
    slug: str, items: list[probe_items.ProbeItem], model: list[Completion], base: list[Completion] | None,
    train: list[Completion] | None = None, base_train: list[Completion] | None = None,
) -> dict[str, Any]:
    model_hits = [c.reproduced for c in model]
    base_hits = [c.reproduced for c in base] if base is not None else None
    test = stats.paired_excess(model_hits, base_hits)
    excess = test.model_rate - (test.base_rate or 0.0)
    against_train = _train_comparison(model_hits, train, base_hits, base_train) if model_hits else None
    # Counted only where a control separates leakage from in-domain training: the train split
    # (GSM8K), or the claimed base (any benchmark).
    counts = against_train is not None or base_hits is not None
    fired = counts and sum(model_hits) >= COMPLETION_MIN_REPRODUCED
    if base_hits is not None:
        fired = fired and excess >= COMPLETION_MIN_EXCESS and test.p_value < COMPLETION_MAX_P
    if against_train is not None:
        fired = fired and against_train["passed"]
    reproduced = _reproduced_rows(items, model, base_hits)
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
        "against_train": against_train,
        "counts": counts,
        "fired": bool(fired),
        "n_reproduced": len(reproduced),
        "reproduced": reproduced[:REPRODUCED_SHOWN],
        "mean_rouge_l": float(np.mean([c.rouge_l for c in model])) if model else 0.0,
    }


def minkpp_evidence(model: ProbeResults, base: ProbeResults | None) -> dict[str, Any]:
    """GSM8K test items against GSM8K train items (same distribution): train-split training
    raises the train items' scores, a leak raises the test items'."""
    own = stats.mann_whitney_greater(model.minkpp_members, model.minkpp_controls)
    evidence: dict[str, Any] = {
        "benchmark": MINKPP_BENCHMARK,
        "controls": f"{MINKPP_BENCHMARK} train",
        "k": 0.2,
        "model": own.as_dict(),
        "base": None,
        "delta": None,
        "counts": True,
    }
    def fires(test: stats.RankTest) -> bool:
        return test.p_value < MINKPP_MAX_P and test.auc >= MINKPP_MIN_AUC

    fired = fires(own)
    if base is not None and base.minkpp_members:
        evidence["base"] = stats.mann_whitney_greater(base.minkpp_members, base.minkpp_controls).as_dict()
        member_delta = np.subtract(model.minkpp_members, base.minkpp_members)
        control_delta = np.subtract(model.minkpp_controls, base.minkpp_controls)
        delta = stats.mann_whitney_greater(member_delta, control_delta)
        evidence["delta"] = delta.as_dict()
        # Both: the gain came with this fine-tune (not inherited from the base), and the test
        # items are more familiar than train items outright (forgetting what the base knew of
        # the train split can lift the difference in differences, never the model's own ranks).
        fired = fired and fires(delta)
    evidence["fired"] = bool(fired)
    evidence["decided_on"] = "model and delta" if evidence["delta"] else "model"
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


def _excess_over_base(model: ProbeResults, base: ProbeResults, seed: int) -> dict[str, float]:
    """(L_model − L_base) per set with paired bootstrap SEs; excess Δ = difference of those."""
    gap = {name: stats.paired_loss_gap(model.skywork[name], base.skywork[name], seed=seed)
           for name in ("test", "ref", "train")}
    return {
        "delta1": gap["test"].estimate - gap["ref"].estimate,
        "delta2": gap["test"].estimate - gap["train"].estimate,
        "delta1_se": float(np.hypot(gap["test"].se, gap["ref"].se)),
        "delta2_se": float(np.hypot(gap["test"].se, gap["train"].se)),
    }


def skywork_evidence(model: ProbeResults, base: ProbeResults | None, seed: int) -> dict[str, Any]:
    """Decides on Δ2 = L_test − L_train only (same distribution): train-split training keeps it
    ≥ 0, a leak of the test texts pushes it below zero. Δ1 is reported, never decisive: the
    reference set is written in another style, so any GSM8K-style training lowers Δ1."""
    own = _deltas(_losses(model, seed))
    evidence: dict[str, Any] = {"benchmark": SKYWORK_BENCHMARK, "model": own, "base": None, "excess": None,
                                "counts": True, "unit": "nats per byte"}
    def below_zero(delta2: float, se: float) -> bool:
        return delta2 < SKYWORK_DELTA2_BELOW and delta2 < -SKYWORK_Z * se

    fired = below_zero(own["delta2"], own["delta2_se"])
    evidence["delta1_low"] = bool(own["delta1"] < SKYWORK_DELTA1_MAX)  # shown, not counted
    if base is not None and base.skywork:
        evidence["base"] = _deltas(_losses(base, seed))
        evidence["excess"] = excess = _excess_over_base(model, base, seed)
        # As for Min-K%++: the model's own Δ2 below zero and the excess over the base too.
        fired = fired and below_zero(excess["delta2"], excess["delta2_se"])
    evidence["fired"] = bool(fired)
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


def _methods(
    plan: ProbePlan, loaded: Mapping[str, list[probe_items.ProbeItem]], model_results: ProbeResults | None,
    base_results: ProbeResults | None, seed: int,
) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    if model_results is not None:
        methods["completion"] = {
            "by_benchmark": {
                slug: completion_evidence(
                    slug, loaded[slug], model_results.completion[slug],
                    base_results.completion.get(slug) if base_results else None,
                    model_results.completion_train if slug in TRAIN_SPLIT_BENCHMARKS else None,
                    base_results.completion_train if base_results and slug in TRAIN_SPLIT_BENCHMARKS else None,
                )
                for slug in plan.completion
            }
        }
        if plan.minkpp_members:
            methods["min_k_pp"] = minkpp_evidence(model_results, base_results)
        if model_results.skywork.keys() >= {"test", "ref", "train"}:
            methods["skywork"] = skywork_evidence(model_results, base_results, seed)
    return methods


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

    methods = _methods(plan, loaded, model_results, base_results, seed)
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
        "skywork": {"delta1_below": SKYWORK_DELTA1_MAX, "delta1_decides": False,
                    "delta2_below": SKYWORK_DELTA2_BELOW, "delta2_z": SKYWORK_Z},
        "controls": {"train_split": list(TRAIN_SPLIT_BENCHMARKS), "min": CONTROL_MIN, "max": CONTROL_MAX},
        "heldout_gap": {"min_gap": HELDOUT_MIN_GAP, "min_z": HELDOUT_MIN_Z},
    }


def _fired_by_benchmark(methods: Mapping[str, Any]) -> dict[str, set[str]]:
    fired: dict[str, set[str]] = {}
    for slug, evidence in methods.get("completion", {}).get("by_benchmark", {}).items():
        if evidence["fired"] and evidence["counts"]:
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
        train = f", train items {e['against_train']['train_rate_pct']:.1f}%" if e["against_train"] else ""
        return (f"completion probe reproduced {e['n_reproduced']}/{e['n']} test question halves "
                f"({100 * e['model_rate']:.1f}%{base}{train})")
    if name == "min_k_pp":
        e = methods["min_k_pp"]
        d = e["delta"] or e["model"]
        return f"Min-K%++ ranks {slug} test items above its train items (AUC {d['auc']:.2f}, p={d['p_value']:.2g})"
    if name == "skywork":
        e = methods["skywork"]
        m = e["model"]
        return f"Skywork Δ2 = L_test − L_train = {m['delta2']:+.3f} ± {m['delta2_se']:.3f} nats/byte" + (
            f" (excess over base {e['excess']['delta2']:+.3f} ± {e['excess']['delta2_se']:.3f})" if e["excess"] else ""
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
