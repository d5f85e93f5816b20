"""The endpoint check when the endpoint misbehaves: reported as such, never a crash, never a
match, and no mismatch verdict drawn from missing data."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.verification.endpoint.render import render_endpoint
from verification.backends.base import Backend
from verification.backends.openai_http import HttpPolicy
from verification.endpoint.check import check_endpoint, check_from_context

FAST = HttpPolicy(connect_timeout_s=1.0, read_timeout_s=1.0, request_deadline_s=2.0, max_retries=2,
                  backoff_base_s=0.02, backoff_max_s=0.1, down_after_failures=3, concurrency=4)


class NeverCalledBackend(Backend):
    """The weights must not be run when the endpoint cannot answer (saves a GPU's time)."""

    name = "never-called"

    def generate(self, requests: Sequence, progress=None):
        raise AssertionError("the weights were sampled although the endpoint never answered")

    def loglikelihood(self, requests: Sequence, progress=None):
        raise AssertionError("the weights were scored although the endpoint never answered")


def run(url: str, model_dir, backend: Backend | None = None, **kwargs):
    settings = dict(n_prompts=4, samples_per_prompt=2, n_permutations=50)
    settings.update(kwargs)
    return check_endpoint(url, model_dir, weights_backend=backend or NeverCalledBackend(), allow_loopback=True,
                          policy=FAST, **settings)


@pytest.mark.parametrize(
    "mode, status, reason",
    [("garbage", "error", "malformed"), ("infinite", "error", "finite log-probability"), ("always500", "error", "HTTP 503"),
     ("always429", "unreachable", "rate_limited"), ("slow", "unreachable", "timeout"),
     ("hangup", "unreachable", "unreachable")],
)
def test_broken_endpoint_is_reported_and_never_flagged(fault_server, tiny_base, mode, status, reason):
    section, flags = run(fault_server.url(mode), tiny_base.path)
    assert flags == []
    assert section["status"] == status and section["verdict"] is None
    assert reason in section["reason"]
    html = render_endpoint(section)
    assert "could not be checked" in html and "not verified" in html


def test_dead_port_is_unreachable(tiny_base):
    from verification.endpoint.vllm_server import free_port

    section, flags = run(f"http://127.0.0.1:{free_port()}/v1", tiny_base.path)
    assert (section["status"], flags) == ("unreachable", [])


def test_refused_urls_send_nothing(fault_server, tiny_base):
    before = sum(fault_server.hits.values())
    section, flags = check_endpoint(fault_server.url("ok"), tiny_base.path, weights_backend=NeverCalledBackend(),
                                    allow_loopback=False)
    assert (section["status"], flags) == ("refused", []) and "loopback" in section["reason"]
    section, flags = check_endpoint("http://user:sk-secret@example.com/v1", tiny_base.path,
                                    weights_backend=NeverCalledBackend(), allow_loopback=False)
    assert section["status"] == "refused" and "sk-secret" not in str(section)
    port = fault_server.port
    section, _ = check_endpoint(fault_server.url("ok"), tiny_base.path, weights_backend=NeverCalledBackend(),
                                allow_loopback=True, blocked_hostports={f"localhost:{port}"})
    assert section["status"] == "refused" and "internal services" in section["reason"]
    assert sum(fault_server.hits.values()) == before
    assert "URL was refused" in render_endpoint(section)
    assert "No API endpoint" in render_endpoint(None)


def test_partly_failing_endpoint_gives_no_verdict_even_when_answers_differ(fault_server, tiny_base, hf_tiny):
    # One prompt of four always fails: 25% errors > 1%, so the clear disagreement on the rest
    # is shown as evidence but no verdict and no flag are drawn.
    section, flags = run(fault_server.url("partial"), tiny_base.path, backend=hf_tiny,
                         prompts=["Write one sentence about the ocean.", "What is 17 times 3?",
                                  "List three colors.", "Give me a name for a pet turtle."])
    assert flags == [] and section["verdict"] is None
    assert section["status"] == "error" and "endpoint requests failed" in section["reason"]
    assert section["errors"]["endpoint"]["n_errors"] == 1 + 2  # the greedy request and both samples
    assert section["greedy"]["n_compared"] == 3 and section["greedy"]["n_agree"] == 0
    html = render_endpoint(section)
    assert "No verdict (error)" in html and "does not behave like" not in html


def test_reflection_like_endpoint_is_flagged_with_identity_evidence(fault_server, tiny_base, hf_tiny):
    """An API that answers as Claude and will not write the word: flagged on behaviour (greedy
    disagreement); the identity probes are recorded as evidence alongside."""
    section, flags = run(fault_server.url("claude"), tiny_base.path, backend=hf_tiny,
                         prompts=[f"What is {i} plus {i}?" for i in range(6)], n_prompts=6)
    assert section["status"] == "ok" and section["verdict"] == "differs", section
    assert [f["kind"] for f in flags] == ["endpoint_mismatch"]
    assert section["greedy"]["n_agree"] == 0 and section["greedy"]["n_compared"] == 6
    which, say = section["identity"]
    assert "claude" in which["endpoint_mentions"] and "anthropic" in which["endpoint_mentions"]
    assert say["endpoint_said_word"] is False
    assert section["logprobs"]["available"] is False  # this endpoint returns no logprobs
    assert flags[0]["evidence"]["identity"][0]["endpoint"] == "I am Claude, made by Anthropic."
    html = render_endpoint(section)
    assert "names: claude, anthropic" in html and "possible output filter" in html


def test_huge_answers_are_capped_in_the_stored_section(fault_server, tiny_base, hf_tiny):
    import json

    section, flags = run(fault_server.url("huge"), tiny_base.path, backend=hf_tiny, n_prompts=5,
                         prompts=[f"What is {i} plus {i}?" for i in range(5)])
    assert section["verdict"] == "differs" and len(flags) == 1
    stored = json.dumps([section, flags], allow_nan=False)  # strict JSON, as the report needs
    assert len(stored) < 200_000
    assert len(section["greedy"]["examples"][0]["endpoint"]) <= 2001


def _context(url: str, model_dir, options: dict):
    from verification.checks import CheckContext, ModelRef
    from verification.claims import ClaimsDoc

    return CheckContext(
        model=ModelRef("verity-test/tiny-base", "verity-test/tiny-base", None, model_dir), base=None, candidates=[],
        claims=ClaimsDoc(endpoint=url), intake={}, benchmarks={}, base_benchmarks=None, endpoint_url=None,
        endpoint_model=None, datasets_dir=None, backend_name="transformers", backend=NeverCalledBackend(),
        options=options,
    )


def test_pipeline_check_refuses_loopback_unless_allowed_and_always_refuses_site_services(fault_server, tiny_base):
    from verification.checks import run_checks
    from verification.endpoint.urlcheck import blocked_hostports_from_urls

    sections, flags, log = run_checks(_context(fault_server.url("always500"), tiny_base.path, {}), [check_from_context])
    assert sections["endpoint"]["status"] == "refused" and flags == [] and log[0]["status"] == "ok"

    fast = {"endpoint_n_prompts": 2, "endpoint_allow_loopback": True}
    sections, flags, _ = run_checks(_context(fault_server.url("always500"), tiny_base.path, fast), [check_from_context])
    assert sections["endpoint"]["status"] == "error" and flags == []

    # The caller's own services (its DATABASE_URL/REDIS_URL) stay refused with loopback allowed.
    own = sorted(blocked_hostports_from_urls([f"redis://127.0.0.1:{fault_server.port}/6"]))
    guarded = {**fast, "endpoint_blocked_hostports": own}
    sections, _, _ = run_checks(_context(fault_server.url("ok"), tiny_base.path, guarded), [check_from_context])
    assert sections["endpoint"]["status"] == "refused" and "internal services" in sections["endpoint"]["reason"]


def test_pipeline_check_without_an_endpoint_adds_no_section(tiny_base):
    from verification.checks import run_checks

    sections, flags, _ = run_checks(_context("", tiny_base.path, {}), [check_from_context])
    assert sections["endpoint"] is None and flags == []
