"""False-positive and detection rates of each contamination method, and of the combined rule,
on the tiny-model zoo (verification/contamination/zoo.py).

    .venv/bin/python performance/zoo_contamination_rates.py --seeds 3 --probed 40

For every seed: the zoo's fine-tunes of a tiny base (trained from scratch on GSM8K train items,
as tests/fixtures_models.py builds tiny-base) are probed with the claimed base and without one,
with a probe seed of its own (so the train-split and reference samples differ per seed). The
base itself, probed without a base, is one more honest model per seed (trained from scratch on
GSM8K train text, like the demo models). Honest = no test item in training; planted = any.

The held-out accuracy gap needs measured accuracies; tiny models score ~0% on GSM8K and
gsm_fresh alike, so it cannot fire here and is not tabled (its false-flag arithmetic is tested in
tests/verification/contamination/test_evidence.py).

Builds are shared with the test suite under var/test-models/ (deterministic), so a rerun only
probes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verification.contamination import zoo  # noqa: E402
from verification.contamination.check import check_contamination  # noqa: E402

METHODS = ("completion", "min_k_pp", "skywork")


def tiny_base() -> Path:
    """tiny-base exactly as the test suite builds it (shared build under var/test-models/)."""
    from tests import fixtures_models

    return fixtures_models._build_once(ROOT / "var" / "test-models" / fixtures_models._build_key())["tiny-base"]


def decisive_numbers(section: dict) -> dict[str, float | None]:
    """The number each method decides on (for --dump): AUC, excess or own Δ2, test−train rate."""
    methods = section["methods"]
    minkpp, sky = methods.get("min_k_pp") or {}, methods.get("skywork") or {}
    completion = methods["completion"]["by_benchmark"].get("gsm8k", {})
    return {
        "minkpp_auc": (minkpp.get("delta") or minkpp.get("model") or {}).get("auc"),
        "delta2": (sky.get("excess") or sky.get("model") or {}).get("delta2"),
        "delta2_se": (sky.get("excess") or sky.get("model") or {}).get("delta2_se"),
        "delta1_own": (sky.get("model") or {}).get("delta1"),
        "completion_test_pct": completion.get("model_rate_pct"),
        "completion_train_pct": (completion.get("against_train") or {}).get("train_rate_pct"),
    }


def fired_methods(section: dict) -> dict[str, bool]:
    methods = section["methods"]
    completion = methods["completion"]["by_benchmark"].get("gsm8k", {})
    return {
        "completion": bool(completion.get("fired") and completion.get("counts")),
        "min_k_pp": bool(methods.get("min_k_pp", {}).get("fired")),
        "skywork": bool(methods.get("skywork", {}).get("fired")),
        "combined": bool(section["flagged"]),
    }


def run(seeds: int, probed: int, datasets_dir: Path, names: tuple[str, ...]) -> list[dict]:
    base = tiny_base()
    rows = []
    for seed in range(seeds):
        probe = {"limit": probed, "seed": 7000 + seed, "reference_size": 2 * probed,
                 "public_outcomes": {"gsm8k": {"n": probed, "correct": 0}}}
        section, _ = check_contamination(base, None, datasets_dir=datasets_dir, **probe)
        rows.append({"model": "base (from scratch, train text)", "seed": seed, "planted": False, "with_base": False,
                     **fired_methods(section), "numbers": decisive_numbers(section)})
        recipes = [r for r in zoo.recipes(probed, seed) if r.name in names]
        folders = zoo.build_all(recipes, base, ROOT / "var", datasets_dir)
        for recipe in recipes:
            out = folders[recipe.key]
            for base_dir in (base, None):
                section, _ = check_contamination(out, base_dir, datasets_dir=datasets_dir, **probe)
                rows.append({"model": recipe.name, "seed": seed, "planted": recipe.leaked,
                             "with_base": base_dir is not None, **fired_methods(section),
                             "numbers": decisive_numbers(section)})
        print(f"seed {seed} done ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["with_base"], row["planted"])].append(row)
    cols = (*METHODS, "combined")
    lines = [f"| model | base claimed | truth | n | {' | '.join(cols)} |", "|---" * (4 + len(cols)) + "|"]
    for (model, with_base, planted), group in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        counts = [f"{sum(r[c] for r in group)}/{len(group)}" for c in cols]
        lines.append(f"| {model} | {'yes' if with_base else 'no'} | {'planted' if planted else 'honest'} | {len(group)} | {' | '.join(counts)} |")
    lines.append("")
    lines.append("| rate | base claimed | n | " + " | ".join(cols) + " |")
    lines.append("|---" * (3 + len(cols)) + "|")
    for label, planted in (("false-positive (honest)", False), ("detection (planted, all)", True)):
        for with_base in (True, False):
            group = [r for r in rows if r["planted"] == planted and r["with_base"] == with_base]
            if group:
                rates = [f"{100 * sum(r[c] for r in group) / len(group):.0f}%" for c in cols]
                lines.append(f"| {label} | {'yes' if with_base else 'no'} | {len(group)} | {' | '.join(rates)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--probed", type=int, default=40, help="test items probed (the run's --limit)")
    parser.add_argument("--models", default="train-only,leak,leak-small", help="zoo recipes (comma-separated)")
    parser.add_argument("--datasets", type=Path, default=Path(os.environ.get("DATASETS_DIR") or ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--dump", type=Path, help="write every probe's fired methods and decisive numbers here (JSON lines)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the tiny models gain nothing from more)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    rows = run(args.seeds, args.probed, args.datasets, tuple(args.models.split(",")))
    print(table(rows))
    if args.dump:
        args.dump.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"\n{len(rows)} probes, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
