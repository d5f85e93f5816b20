"""False-positive and detection rates of each provenance check on the tiny-model zoo
(tests/verification/provenance/zoo.py), over several seeds.

    .venv/bin/python performance/zoo_provenance_rates.py --seeds 0,1,2,3,4

For every seed the zoo is built from the suite's tiny-base A (each seed changes B's continued
pretraining and every fine-tune's data order): B = A continued-pretrained, fine-tunes of A and of
B with little, ordinary and much training, a fine-tune of A on B's own text, an honest
from-scratch model with unused reserved tokens and the same model with untrained <thinking>-style
tokens. Each case is run through verification.provenance.check_provenance with the candidates a
maintainer would have registered, and the case's expected outcome for each check is compared
with what the check did:

- lineage (claimed base): base_model_mismatch when a base is claimed (sibling and ratio rules);
- lineage (no base claimed): base_model_mismatch (undeclared base) when none is claimed;
- untrained tokens: untrained_tokens of warning severity.

Honest = the check must stay silent; planted = it should fire. "expected miss" cases (a fine-tune
longer than the siblings' gap) are tabled apart: the rule leaves them undecided on purpose.
Builds are cached under var/test-models/ (about 4 minutes per seed on a 2-core machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.verification.provenance import zoo  # noqa: E402
from verification import tinymodels as tm  # noqa: E402
from verification.provenance import check_provenance  # noqa: E402

A, B = "A", "B"
LINEAGE, UNDECLARED, TOKENS = "lineage (claimed base)", "lineage (no base claimed)", "untrained tokens"
# (case, model, claimed base or None, candidates, {check: "honest" | "planted" | "miss"})
CASES = (
    ("ft-b claims B", "ft-b", B, (A,), {LINEAGE: "honest", TOKENS: "honest"}),
    ("ft-b-little claims B", "ft-b-little", B, (A,), {LINEAGE: "honest"}),
    ("ft-b-much claims B", "ft-b-much", B, (A,), {LINEAGE: "honest"}),
    ("ft-a claims A", "ft-a", A, (B,), {LINEAGE: "honest", TOKENS: "honest"}),
    ("ft-a-much claims A", "ft-a-much", A, (B,), {LINEAGE: "honest"}),
    ("B claims A (continued pretraining)", "base-b", A, (), {LINEAGE: "honest"}),
    ("scratch-reserved, no base", "scratch-reserved", None, (A, B), {UNDECLARED: "honest", TOKENS: "honest"}),
    ("scratch-reserved, nothing known", "scratch-reserved", None, (), {UNDECLARED: "honest", TOKENS: "honest"}),
    ("ft-a claims B", "ft-a", B, (A,), {LINEAGE: "planted"}),
    ("ft-a-little claims B", "ft-a-little", B, (A,), {LINEAGE: "planted"}),
    ("ft-a-on-b-text claims B", "ft-a-on-b-text", B, (A,), {LINEAGE: "planted"}),
    ("ft-b claims A", "ft-b", A, (B,), {LINEAGE: "planted"}),
    ("ft-b-much claims A", "ft-b-much", A, (B,), {LINEAGE: "planted"}),
    ("ft-a-much claims B", "ft-a-much", B, (A,), {LINEAGE: "miss"}),
    ("ft-a, no base", "ft-a", None, (A, B), {UNDECLARED: "planted", TOKENS: "honest"}),
    ("ft-b-little, no base", "ft-b-little", None, (A, B), {UNDECLARED: "planted"}),
    ("scratch-raw, nothing known", "scratch-raw", None, (), {TOKENS: "planted", UNDECLARED: "honest"}),
)


def tiny_base() -> tuple[Path, str]:
    from tests import fixtures_models

    path = fixtures_models._build_once(ROOT / "var" / "test-models" / fixtures_models._build_key())["tiny-base"]
    return path, tm.snapshot_sha(path)


def fired(check: str, flags: list[dict], claimed: str | None) -> bool:
    if check == TOKENS:
        return any(f["kind"] == "untrained_tokens" and f["severity"] != "info" for f in flags)
    if check == UNDECLARED and claimed is not None:
        return False
    return any(f["kind"] == "base_model_mismatch" for f in flags)


def sibling_position(section: dict) -> float | None:
    rows = section["weights"].get("siblings") or []
    return rows[0]["median_position"] if rows else None


def run_seed(seed: int, base: Path, sha: str, datasets: Path, tally, positions) -> None:
    models = zoo.cached_zoo(base, sha, lambda: tm.corpus_texts(datasets, limit=4000), seed=seed)
    paths = {A: base, B: models["base-b"], **models}
    for name, model, claimed, candidates, expected in CASES:
        section, flags = check_provenance(
            paths[model], paths[claimed] if claimed else None, base_name=claimed, claimed_training="full",
            candidates={c: paths[c] for c in candidates},
        )
        for check, kind in expected.items():
            tally[(check, kind)][name].append(fired(check, flags, claimed))
        position = sibling_position(section)
        if position is not None:
            positions[name].append(position)


def print_table(tally, positions) -> None:
    print(f"\n{'check':28s} {'cases':8s} {'runs':>5s} {'fired':>6s} {'rate':>7s}")
    for check in (LINEAGE, UNDECLARED, TOKENS):
        for kind, label in (("honest", "FP rate"), ("planted", "detection"), ("miss", "expected miss")):
            runs = [hit for case in tally[(check, kind)].values() for hit in case]
            if runs:
                rate = sum(runs) / len(runs)
                print(f"{check:28s} {kind:8s} {len(runs):5d} {sum(runs):6d} {rate:7.1%}  {label}")
    print("\nper case and check: fired / runs; median sibling position t (0 = the other sibling, 1 = the claimed base)")
    for name, _, _, _, expected in CASES:
        cells = []
        for check, kind in expected.items():
            values = tally[(check, kind)][name]
            cells.append(f"{check} [{kind}] {sum(values)}/{len(values)}")
        t = positions.get(name)
        where = f"; t median {statistics.median(t):+.3f} (min {min(t):+.3f}, max {max(t):+.3f})" if t else ""
        print(f"  {name:36s} " + ", ".join(cells) + where)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated zoo seeds (default 0,1,2,3,4)")
    parser.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base, sha = tiny_base()
    tally: dict = defaultdict(lambda: defaultdict(list))
    positions: dict = defaultdict(list)
    for seed in seeds:
        started = time.monotonic()
        run_seed(seed, base, sha, Path(args.datasets), tally, positions)
        print(f"seed {seed}: {time.monotonic() - started:.0f} s", flush=True)
    print_table(tally, positions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
