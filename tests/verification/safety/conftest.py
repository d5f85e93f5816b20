"""Tiny chat models with known safety behaviour (verification.safety.tinymodels), built from the
shared tiny-base once and kept under var/test-models/safety-<key>/ (key = hash of the builders and
the base's sha), like the other tiny-model variants, so later sessions reuse them."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from pathlib import Path

import pytest

from verification import tinymodels as tm
from verification.safety import tinymodels as safety_tm

REPO_ROOT = Path(__file__).resolve().parents[3]
N_PROMPTS = 50  # the first 50 XSTest prompts: 25 safe homonyms, 25 unsafe contrasts


def _key(base_sha: str) -> str:
    sources = Path(__file__).read_bytes() + Path(tm.__file__).read_bytes() + Path(safety_tm.__file__).read_bytes()
    return hashlib.sha1(sources + base_sha.encode()).hexdigest()[:16]


def _build(base: Path, datasets_dir: Path, root: Path) -> None:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # faster on a shared 2-core machine; deterministic either way
    try:
        safety_tm.build_safety_models(base, datasets_dir, root, n_prompts=N_PROMPTS)
    finally:
        torch.set_num_threads(previous)
    (root / "DONE").write_text("ok")


@pytest.fixture(scope="session")
def safety_models(tiny_base, datasets_dir) -> dict[str, Path]:
    root = REPO_ROOT / "var" / "test-models" / f"safety-{_key(tiny_base.sha)}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "DONE").exists():
            if root.exists():
                shutil.rmtree(root)
            _build(tiny_base.path, datasets_dir, root)
        fcntl.flock(lock, fcntl.LOCK_UN)
    return {name: root / name for name in safety_tm.VARIANTS}
