"""How well refusal labels agree with human judgement, measured on a model held out entirely.

For each labelled model M: fit the head on the other model's completions only, label M's
completions, and compare with M's human labels (agreement with a Wilson interval, per prompt type,
and the two kinds of error). XSTest's string-match rule is measured on the same held-out sets.

`python -m verification.safety.agreement [--datasets-dir DIR] [--write]` prints the figures and,
with --write, rebuilds the shipped head (fitted on all labelled models) with them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verification import stats
from verification.datasets import datasets_dir_or_default
from verification.safety.classifier import (
    CUES_VERSION,
    HEAD_FILE,
    PRIOR_SD,
    RefusalClassifier,
    RefusalHead,
    fit_head,
    prior_head,
)
from verification.safety.features import refusal_features, xstest_string_match
from verification.safety.human_labels import LABELLED_FILES, LabelledCompletion, labelled_sources, load_labelled


def agreement_stats(predicted: Sequence[bool], human: Sequence[bool], types: Sequence[str]) -> dict[str, Any]:
    """Agreement of predicted refusals with human ones: overall with a Wilson interval, the two
    error kinds, and per prompt type (worst first)."""
    n = len(human)
    agree = sum(1 for p, h in zip(predicted, human) if p == h)
    low, high = stats.wilson_interval(agree, n)
    per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p, h, kind in zip(predicted, human, types):
        per_type[kind][0] += 1
        per_type[kind][1] += int(p == h)
    by_type = {
        kind: {"n": total, "agree": ok, "rate": ok / total}
        for kind, (total, ok) in sorted(per_type.items(), key=lambda kv: (kv[1][1] / kv[1][0], kv[0]))
    }
    return {
        "n": n,
        "agree": agree,
        "rate": agree / n if n else 0.0,
        "ci_low": low,
        "ci_high": high,
        "false_refusals": sum(1 for p, h in zip(predicted, human) if p and not h),
        "missed_refusals": sum(1 for p, h in zip(predicted, human) if h and not p),
        "by_type": by_type,
    }


def _rows_features(rows: Sequence[LabelledCompletion]) -> list[list[float]]:
    return [refusal_features(r.prompt, r.completion) for r in rows]


def _predict(head: RefusalHead, features: list[list[float]]) -> list[bool]:
    return [bool(p >= 0.5) for p in head.probability(features)]


def held_out_agreement(datasets_dir: Path | str, prior_sd: float = PRIOR_SD) -> dict[str, Any]:
    """Per held-out model: the head fitted on the other models, the prior alone, XSTest's rule,
    and McNemar's test of the classifier against the rule on the same items."""
    data = {model: load_labelled(datasets_dir, model) for model in LABELLED_FILES}
    features = {model: _rows_features(rows) for model, rows in data.items()}
    result: dict[str, Any] = {}
    for held_out, rows in data.items():
        train = [m for m in data if m != held_out]
        head = fit_head([f for m in train for f in features[m]], [r.refusal for m in train for r in data[m]], prior_sd)
        human = [r.refusal for r in rows]
        types = [r.prompt_type for r in rows]
        ours = _predict(head, features[held_out])
        rule = [xstest_string_match(r.completion) for r in rows]
        paired = stats.mcnemar([p == h for p, h in zip(ours, human)], [p == h for p, h in zip(rule, human)])
        result[held_out] = {
            "trained_on": train,
            "classifier": agreement_stats(ours, human, types),
            "prior_only": agreement_stats(_predict(prior_head(), features[held_out]), human, types),
            "xstest_string_match": agreement_stats(rule, human, types),
            "classifier_vs_string_match": paired.as_dict(),
        }
    return result


def summary(held_out: dict[str, Any]) -> dict[str, Any]:
    """The figures a page quotes: per held-out model, rate and interval of the classifier and of
    the string-match rule, and the prompt types where the classifier errs most."""
    out = {}
    for model, parts in held_out.items():
        ours, rule = parts["classifier"], parts["xstest_string_match"]
        worst = [(k, v) for k, v in ours["by_type"].items() if v["rate"] < 1.0][:3]
        out[model] = {
            "trained_on": parts["trained_on"],
            "n": ours["n"],
            "rate": ours["rate"], "ci_low": ours["ci_low"], "ci_high": ours["ci_high"],
            "string_match_rate": rule["rate"],
            "string_match_ci": [rule["ci_low"], rule["ci_high"]],
            "vs_string_match_p": parts["classifier_vs_string_match"]["p_value"],
            "worst_types": [{"type": k, "rate": v["rate"], "n": v["n"]} for k, v in worst],
        }
    return out


def build_head_file(datasets_dir: Path | str, path: Path | str = HEAD_FILE) -> dict[str, Any]:
    """Fit the shipped head on every labelled model and write it with its held-out agreement."""
    rows = [r for model in LABELLED_FILES for r in load_labelled(datasets_dir, model)]
    head = fit_head(_rows_features(rows), [r.refusal for r in rows])
    document = {
        "kind": "verity.refusal_head/1",
        "cues_version": CUES_VERSION,
        "prior_sd": PRIOR_SD,
        "head": head.as_dict(),
        "trained_on": labelled_sources(datasets_dir),
        "agreement": {"held_out": summary(held_out_agreement(datasets_dir))},
    }
    document["version"] = RefusalClassifier(head).version
    Path(path).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verification.safety.agreement")
    parser.add_argument("--datasets-dir", default=None)
    parser.add_argument("--write", action="store_true", help=f"rebuild {HEAD_FILE.name}")
    args = parser.parse_args(argv)
    datasets_dir = datasets_dir_or_default(args.datasets_dir)
    if args.write:
        document = build_head_file(datasets_dir)
        print(json.dumps(document["agreement"], indent=1))
        return 0
    print(json.dumps(held_out_agreement(datasets_dir), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
