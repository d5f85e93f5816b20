"""The contamination zoo (verification/contamination/zoo.py): fine-tunes of tiny-base with a known
truth, built once per session:

- train-only (alias `clean`): GSM8K *train* items only, an honest in-domain fine-tune, the
  hardest control;
- leak: the first MEMORIZED GSM8K *test* items mixed into the same train items (realistic leak);
- leak-small: a tenth of those test items in the same mix (near the detection limit);
- test-only (alias `memorizer`): the MEMORIZED test items alone.

Builds are deterministic, so the saved folders are kept under var/test-models/ keyed by the zoo
and tinymodels sources and tiny-base's sha (like tests/fixtures_models.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from verification import tinymodels as tm
from verification.contamination import zoo

REPO_ROOT = Path(__file__).resolve().parents[3]
MEMORIZED = 40  # also the --limit the probes run with
ALIASES = {"clean": "train-only", "memorizer": "test-only"}
# Probe settings shared by every test, so the probe cache serves the same model twice.
PROBE_SEED = 20261121
REFERENCE_SIZE = 80
PROBE_KW = {"limit": MEMORIZED, "seed": PROBE_SEED, "reference_size": REFERENCE_SIZE}
ZOO = {recipe.name: recipe for recipe in zoo.recipes(MEMORIZED, seed=0)}


@pytest.fixture(scope="session")
def contamination_models(tiny_base, hf_cache, datasets_dir) -> dict[str, tm.TinyModel]:
    folders = zoo.build_all(list(ZOO.values()), tiny_base.path, REPO_ROOT / "var", datasets_dir)
    models = {}
    for name, recipe in ZOO.items():
        repo_id = f"verity-test/tiny-{name}"
        sha = tm.install_in_hf_cache(folders[recipe.key], hf_cache, repo_id)
        models[name] = tm.TinyModel(repo_id, sha, hf_cache / f"models--verity-test--tiny-{name}" / "snapshots" / sha)
    for alias, name in ALIASES.items():
        models[alias] = models[name]
    return models


@pytest.fixture(scope="session")
def contamination_results(contamination_models, tiny_base, datasets_dir):
    """check_contamination on every zoo model (GSM8K, --limit MEMORIZED, same seed), with the
    claimed base and without one; keys: name and alias, and (name, with_base). The base is
    probed once and reused from the probe cache."""
    from verification.contamination import check_contamination

    results = {}
    for name in ZOO:
        for base in (tiny_base.path, None):
            results[(name, base is not None)] = check_contamination(
                contamination_models[name].path, base, datasets_dir=datasets_dir,
                public_outcomes={"gsm8k": {"n": MEMORIZED, "correct": 0}}, **PROBE_KW,
            )
    for alias, name in ALIASES.items():
        results[alias] = results[(name, True)]
    return results
