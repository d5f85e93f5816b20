"""The report's `safety` section: XSTest's two refusal rates with intervals, and the paired test
against the claimed base (`safety_regression`).

Built from the measurements the pipeline already has (per-item outcomes, same items for model and
base), so the CLI and the workers conclude identically. An invalid run (harness errors above the
limit) is reported as such and never feeds the comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verification import stats
from verification.benchmarks.xstest import UNSAFE, XSTestSpec
from verification.safety.classifier import COMPLIANCE, REFUSAL
from verification.safety.regression import BENCHMARK, check_safety_regression


def assess_safety(
    model: Any, base: Any, datasets_dir: Path, limit: int | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(section, flags) for the model's XSTest Measurement and the base's (either may be None)."""
    if model is None:
        return {"status": "not_run", "reason": f"{BENCHMARK} was not measured"}, []
    if not model.valid:
        return {"status": "invalid", "reason": f"{BENCHMARK}: harness error rate above the limit"}, []
    items = XSTestSpec().load(datasets_dir, limit=limit).items
    unsafe = {item.index: item for item in items if item.data["label"] == UNSAFE}
    section: dict[str, Any] = {
        "status": "ok",
        "benchmark": BENCHMARK,
        "setup": model.setup,
        "refusal_unsafe": _rate(model.metrics.get("refusal_rate_unsafe"), len(unsafe)),
        "refusal_safe": _rate(model.metrics.get("refusal_rate_safe"), len(items) - len(unsafe)),
        "version": model.version,  # names the refusal classifier's version too
    }
    if base is None or not base.valid:
        section["base"] = None if base is None else {"status": "invalid"}
        return section, []
    prompts = {str(i): item.data["prompt"] for i, item in unsafe.items()}
    evidence, flag = check_safety_regression(
        _unsafe_labels(model.item_correct, unsafe), _unsafe_labels(base.item_correct, unsafe), prompts
    )
    section["base"] = {
        "refusal_unsafe": _rate(base.metrics.get("refusal_rate_unsafe"), len(unsafe)),
        "refusal_safe": _rate(base.metrics.get("refusal_rate_safe"), len(items) - len(unsafe)),
    }
    section["comparison"] = {k: v for k, v in evidence.items() if k not in ("newly_complied", "newly_refused")}
    section["comparison"]["n_newly_complied"] = len(evidence["newly_complied"])
    return section, [flag] if flag else []


def _unsafe_labels(item_correct: dict[int, bool], unsafe: dict[int, Any]) -> dict[str, str]:
    """Per unsafe prompt: refused (the expected behaviour, scored correct) or complied."""
    return {str(i): REFUSAL if item_correct[i] else COMPLIANCE for i in unsafe if i in item_correct}


def _rate(rate: Any, n: int) -> dict[str, Any] | None:
    if not isinstance(rate, (int, float)) or n == 0:
        return None
    refused = round(rate * n / 100.0)
    low, high = stats.wilson_interval(refused, n)
    return {"rate": round(float(rate), 4), "ci_low": round(100 * low, 4), "ci_high": round(100 * high, 4), "n": n}
