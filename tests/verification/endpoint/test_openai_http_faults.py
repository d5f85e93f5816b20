"""The HTTP backend against a real local server that times out, fails, rate-limits and lies."""

from __future__ import annotations

import socket
import time

import pytest

from verification.backends.base import BackendError
from verification.backends.openai_http import HttpPolicy, OpenAIHTTPBackend
from verification.records import GenerationRequest, LoglikelihoodRequest, SamplingParams

FAST = HttpPolicy(
    connect_timeout_s=1.0, read_timeout_s=1.0, request_deadline_s=2.0, max_retries=3,
    backoff_base_s=0.02, backoff_max_s=0.2, down_after_failures=4, concurrency=2,
)
GREEDY = SamplingParams(temperature=0.0, max_tokens=8)


def backend(url: str, **kwargs) -> OpenAIHTTPBackend:
    return OpenAIHTTPBackend(url, allow_loopback=True, policy=FAST, **kwargs)


def requests(n: int, chat: bool = True) -> list[GenerationRequest]:
    return [GenerationRequest(f"prompt {i}", GREEDY, chat=chat) for i in range(n)]


def test_ok_server_answers_in_order_and_names_the_listed_model(fault_server):
    be = backend(fault_server.url("ok"))
    out = be.generate(requests(3) + requests(1, chat=False))
    assert [g.text for g in out] == ["hello world"] * 4 and all(g.error is None for g in out)
    assert be.model == "served-model"
    sent = [b for b in fault_server.bodies if b["mode"] == "ok" and b["path"] != "/v1/models"]
    assert {b["path"] for b in sent} == {"/v1/chat/completions", "/v1/completions"}
    assert all(b["body"]["model"] == "served-model" and b["body"]["temperature"] == 0.0 for b in sent)


def test_explicit_model_name_is_used_without_listing(fault_server):
    be = backend(fault_server.url("ok"), model="claimed-name")
    be.generate(requests(1))
    assert fault_server.bodies[-1]["body"]["model"] == "claimed-name"


def test_garbage_and_wrong_shape_json_are_per_request_errors(fault_server):
    garbage = backend(fault_server.url("garbage"), model="m").generate(requests(2))
    assert all(g.error and g.error.startswith("malformed") and g.text == "" for g in garbage)
    wrong = backend(fault_server.url("wrongshape"), model="m").generate(requests(2))
    assert all(g.error and "malformed" in g.error for g in wrong)


def test_transient_500s_and_429s_are_retried_until_an_answer(fault_server):
    be = backend(fault_server.url("flaky500"), model="m")
    out = be.generate(requests(2))
    assert all(g.error is None and g.text == "hello world" for g in out)
    assert be.client.stats["retries"] >= 2
    limited = backend(fault_server.url("ratelimit"), model="m").generate(requests(3))
    assert all(g.error is None for g in limited)


def test_persistent_failures_give_up_after_bounded_retries(fault_server):
    before = fault_server.hits["always500"]
    out = backend(fault_server.url("always500"), model="m").generate(requests(2))
    assert all(g.error and "HTTP 503" in g.error for g in out)
    assert fault_server.hits["always500"] - before == 2 * (FAST.max_retries + 1)
    rate = backend(fault_server.url("always429"), model="m").generate(requests(1))
    assert rate[0].error.startswith("rate_limited")


def test_slow_and_dripping_servers_time_out(fault_server):
    policy = HttpPolicy(read_timeout_s=0.5, request_deadline_s=1.0, max_retries=0, down_after_failures=10)
    started = time.monotonic()
    slow = OpenAIHTTPBackend(fault_server.url("slow"), model="m", allow_loopback=True, policy=policy)
    assert slow.generate(requests(1))[0].error.startswith("timeout")
    drip = OpenAIHTTPBackend(fault_server.url("drip"), model="m", allow_loopback=True, policy=policy)
    assert drip.generate(requests(1))[0].error.startswith("timeout")
    assert time.monotonic() - started < 5


def test_redirects_are_not_followed(fault_server):
    out = backend(fault_server.url("redirect"), model="m").generate(requests(1))
    assert "redirect not followed" in out[0].error


def test_hangups_and_refused_connections_mark_the_endpoint_down_quickly(fault_server):
    out = backend(fault_server.url("hangup"), model="m").generate(requests(2))
    assert all(g.error and g.error.startswith("unreachable") for g in out)
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    be = backend(f"http://127.0.0.1:{dead_port}/v1", model="m")
    started = time.monotonic()
    out = be.generate(requests(20))
    assert all(g.error and g.error.startswith("unreachable") for g in out)
    # Down after 4 consecutive failures: the other requests fail fast instead of retrying.
    assert be.client.stats["attempts"] <= FAST.down_after_failures + FAST.concurrency
    assert time.monotonic() - started < 3
    with pytest.raises(BackendError, match="unreachable"):
        backend(f"http://127.0.0.1:{dead_port}/v1").check_reachable()


def test_refused_url_is_an_error_not_a_request(fault_server):
    be = OpenAIHTTPBackend(fault_server.url("ok"), model="m", allow_loopback=False, policy=FAST)
    before = sum(fault_server.hits.values())
    out = be.generate(requests(1))
    assert out[0].error.startswith("refused") and "loopback" in out[0].error
    assert sum(fault_server.hits.values()) == before


def test_loglikelihood_without_echo_support_is_a_per_request_error(fault_server):
    out = backend(fault_server.url("nologprobs"), model="m").loglikelihood(
        [LoglikelihoodRequest("Question: 1+1=", " 2")]
    )
    assert out[0].error and "HTTP 400" in out[0].error
    assert out[0].logprob == float("-inf")
