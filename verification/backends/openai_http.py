"""OpenAI-compatible HTTP backend (`/v1/completions`, `/v1/chat/completions`, `/v1/models`).

Used two ways: to query a submitter's claimed API endpoint (verification.endpoint), and to
benchmark a local `vllm serve`. Everything that comes back is untrusted:

- the URL is validated and its host resolved once (verification.endpoint.urlcheck); every
  connection goes to a pinned, checked address, never to a fresh DNS answer, and redirects are
  not followed (a 3xx is an error: it could point anywhere);
- every request has a connect timeout, a per-read timeout and an overall deadline, so a server
  that drips bytes cannot hold a worker forever; bodies are capped in size;
- 429, 5xx and connection failures are retried a bounded number of times with exponential
  backoff (Retry-After honoured, capped); after several consecutive transport failures the
  endpoint is considered down and the remaining requests fail fast;
- a body that is not the expected JSON is a per-request error. A failed request never raises
  out of `generate`/`loglikelihood`: it sets `error` on that answer (counted in n_errors, never
  as a match).
"""

from __future__ import annotations

import http.client
import json
import math
import random
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from verification.backends.base import Backend, BackendError, ProgressCallback
from verification.endpoint.urlcheck import EndpointURLError, PinnedEndpoint, pin_endpoint
from verification.records import (
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "verity-endpoint-check/1"


@dataclass(frozen=True)
class HttpPolicy:
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # per socket read
    request_deadline_s: float = 180.0  # whole request, including a slow body
    max_retries: int = 3  # extra attempts after the first, for retryable failures only
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_response_bytes: int = 16 * 1024 * 1024
    # After this many consecutive transport failures (no HTTP answer at all), stop trying.
    down_after_failures: int = 4
    concurrency: int = 4


class EndpointRequestError(Exception):
    """One request failed. `kind`: unreachable | timeout | rate_limited | http_status |
    malformed | refused (URL policy) | unsupported."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status

    def describe(self) -> str:
        return f"{self.kind}: {self}"


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a pre-validated IP while sending the original Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float, connect_timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._connect_timeout = connect_timeout

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), timeout=self._connect_timeout)
        self.sock.settimeout(self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a pre-validated IP; the certificate is checked against the URL's host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, connect_timeout: float):
        context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._connect_timeout = connect_timeout
        self._ssl_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), timeout=self._connect_timeout)
        raw.settimeout(self.timeout)
        self.sock = self._ssl_context.wrap_socket(raw, server_hostname=self.host)


class OpenAIClient:
    """JSON over HTTP to one validated endpoint, with the retry/timeout policy above."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        allow_loopback: bool = False,
        blocked_hostports: set[str] | frozenset[str] = frozenset(),
        policy: HttpPolicy | None = None,
        rng_seed: int = 0,
    ):
        self.base_url = base_url
        self.api_key = api_key
        self.allow_loopback = allow_loopback
        self.blocked_hostports = frozenset(blocked_hostports)
        self.policy = policy or HttpPolicy()
        self._pinned: PinnedEndpoint | None = None
        self._lock = threading.Lock()
        self._consecutive_transport_failures = 0
        self._down_reason: str | None = None
        self._jitter = random.Random(rng_seed)
        self.stats = {"requests": 0, "attempts": 0, "retries": 0}

    # -- addressing -----------------------------------------------------------------------------
    def pinned(self) -> PinnedEndpoint:
        with self._lock:
            if self._pinned is None:
                try:
                    self._pinned = pin_endpoint(
                        self.base_url,
                        allow_loopback=self.allow_loopback,
                        blocked_hostports=self.blocked_hostports,
                    )
                except EndpointURLError as exc:
                    raise EndpointRequestError("refused", str(exc)) from None
            return self._pinned

    def api_path(self, suffix: str) -> str:
        """`suffix` like "/chat/completions"; the base URL may or may not already end in /v1."""
        base = self.pinned().base_path.rstrip("/")
        if not base.endswith("/v1"):
            base = f"{base}/v1"
        return f"{base}{suffix}"

    @property
    def down_reason(self) -> str | None:
        return self._down_reason

    # -- requests ---------------------------------------------------------------------------------
    def get_json(self, suffix: str) -> Any:
        return self._request("GET", self.api_path(suffix), None)

    def post_json(self, suffix: str, body: dict[str, Any]) -> Any:
        return self._request("POST", self.api_path(suffix), body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        pinned = self.pinned()
        self.stats["requests"] += 1
        last: EndpointRequestError | None = None
        for attempt in range(self.policy.max_retries + 1):
            if self._down_reason is not None:
                raise EndpointRequestError("unreachable", f"endpoint considered down: {self._down_reason}")
            self.stats["attempts"] += 1
            try:
                status, headers, raw = self._send_once(pinned, method, path, body)
            except EndpointRequestError as exc:  # transport failure: no HTTP answer
                last = exc
                self._note_transport_failure(exc)
                if attempt < self.policy.max_retries:
                    self.stats["retries"] += 1
                    time.sleep(self._backoff(attempt, None))
                continue
            self._consecutive_transport_failures = 0
            if status in RETRY_STATUSES:
                kind = "rate_limited" if status == 429 else "http_status"
                last = EndpointRequestError(kind, f"HTTP {status}: {_snippet(raw)}", status)
                if attempt < self.policy.max_retries:
                    self.stats["retries"] += 1
                    time.sleep(self._backoff(attempt, headers.get("retry-after")))
                continue
            if 300 <= status < 400:
                raise EndpointRequestError("http_status", f"HTTP {status} redirect not followed", status)
            if status >= 400:
                raise EndpointRequestError("http_status", f"HTTP {status}: {_snippet(raw)}", status)
            try:
                return json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise EndpointRequestError("malformed", f"response is not JSON ({exc}): {_snippet(raw)}") from None
        assert last is not None
        raise last

    def _note_transport_failure(self, exc: EndpointRequestError) -> None:
        with self._lock:
            self._consecutive_transport_failures += 1
            if self._consecutive_transport_failures >= self.policy.down_after_failures:
                self._down_reason = f"{self._consecutive_transport_failures} consecutive failures, last: {exc.describe()}"

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.policy.backoff_max_s, self.policy.backoff_base_s * (2**attempt))
        if retry_after:
            try:
                delay = min(self.policy.backoff_max_s, max(delay, float(retry_after)))
            except ValueError:
                pass  # an HTTP-date Retry-After: use our own backoff
        with self._lock:
            return delay * (0.75 + 0.5 * self._jitter.random())

    def _send_once(
        self, pinned: PinnedEndpoint, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, str], bytes]:
        deadline = time.monotonic() + self.policy.request_deadline_s
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        host_header = pinned.host if pinned.port == (443 if pinned.scheme == "https" else 80) else f"{pinned.host}:{pinned.port}"
        if ":" in pinned.host:
            host_header = f"[{pinned.host}]:{pinned.port}"
        headers["Host"] = host_header
        errors: list[str] = []
        for address in pinned.addresses:
            conn_cls = _PinnedHTTPSConnection if pinned.scheme == "https" else _PinnedHTTPConnection
            conn = conn_cls(pinned.host, pinned.port, address, self.policy.read_timeout_s, self.policy.connect_timeout_s)
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = self._read_body(response, deadline)
                return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
            except (socket.timeout, TimeoutError) as exc:
                raise EndpointRequestError("timeout", f"timed out talking to {pinned.host}:{pinned.port} ({exc})") from None
            except EndpointRequestError:
                raise
            except (ConnectionRefusedError, OSError) as exc:
                errors.append(f"{address}: {exc}")  # try the next pinned address
            except http.client.HTTPException as exc:
                raise EndpointRequestError("unreachable", f"bad HTTP response: {exc!r}") from None
            finally:
                conn.close()
        raise EndpointRequestError("unreachable", "cannot connect: " + "; ".join(errors))

    def _read_body(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            if time.monotonic() > deadline:
                raise EndpointRequestError(
                    "timeout", f"response not complete within {self.policy.request_deadline_s:.0f}s"
                )
            chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > self.policy.max_response_bytes:
                raise EndpointRequestError("malformed", f"response larger than {self.policy.max_response_bytes} bytes")
            chunks.append(chunk)


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw[:limit].decode("utf-8", errors="replace").replace("\n", " ")
    return text + ("…" if len(raw) > limit else "")


def _echo_end(tokens: list[str], prompt: str) -> int:
    """Number of leading tokens that make up the echoed prompt."""
    joined = "".join(tokens)
    length = len(joined)
    for end in range(len(tokens), 0, -1):
        if joined.endswith(prompt, 0, length):
            return end
        length -= len(tokens[end - 1])
    raise EndpointRequestError("malformed", "the echoed tokens do not reproduce the prompt")


def _field(obj: Any, *keys: str | int) -> Any:
    """obj[k1][k2]... or raise a `malformed` error naming the missing piece."""
    current = obj
    for key in keys:
        try:
            current = current[key]
        except (KeyError, IndexError, TypeError):
            path = "".join(f"[{k!r}]" for k in keys)
            raise EndpointRequestError("malformed", f"response lacks {path}") from None
    return current


def _float_list(values: Any) -> list[float]:
    if not isinstance(values, list):
        raise EndpointRequestError("malformed", "logprobs is not a list")
    out: list[float] = []
    for value in values:
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise EndpointRequestError("malformed", f"logprob {value!r} is not a number")
        if not math.isfinite(value) or value > 1e-6:
            # Python's json accepts NaN/Infinity; a sampled token's logprob is finite and <= 0.
            raise EndpointRequestError("malformed", f"logprob {value!r} is not a finite log-probability")
        out.append(float(value))
    return out


class OpenAIHTTPBackend(Backend):
    """Backend over an OpenAI-compatible server. `model=None`: the first id from /v1/models."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        allow_loopback: bool = False,
        blocked_hostports: set[str] | frozenset[str] = frozenset(),
        policy: HttpPolicy | None = None,
        want_logprobs: bool = False,
        extra_body: dict[str, Any] | None = None,
    ):
        self.client = OpenAIClient(
            base_url,
            api_key=api_key,
            allow_loopback=allow_loopback,
            blocked_hostports=blocked_hostports,
            policy=policy,
        )
        self._model = model
        self.want_logprobs = want_logprobs
        self.extra_body = dict(extra_body or {})

    # -- model listing --------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        listing = self.client.get_json("/models")
        data = _field(listing, "data")
        if not isinstance(data, list):
            raise EndpointRequestError("malformed", "/v1/models 'data' is not a list")
        ids = [str(_field(entry, "id")) for entry in data]
        return ids

    @property
    def model(self) -> str:
        if self._model is None:
            ids = self.list_models()
            if not ids:
                raise EndpointRequestError("malformed", "/v1/models lists no model")
            self._model = ids[0]
        return self._model

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "endpoint": self.client.base_url, "model": self._model}

    # -- generation -------------------------------------------------------------------------------
    def _generation_body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        params = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "n": 1,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if request.chat:
            body["messages"] = [{"role": "user", "content": request.prompt}]
            if self.want_logprobs:
                body["logprobs"] = True
            path = "/chat/completions"
        else:
            body["prompt"] = request.prompt
            if self.want_logprobs:
                body["logprobs"] = 1
            path = "/completions"
        body.update(self.extra_body)
        return path, body

    def _generate_one(self, request: GenerationRequest) -> Generation:
        try:
            path, body = self._generation_body(request)
            response = self.client.post_json(path, body)
            return self._parse_generation(response, chat=request.chat)
        except EndpointRequestError as exc:
            return Generation(error=exc.describe())
        except (TypeError, ValueError, AttributeError) as exc:  # JSON of an unexpected shape
            return Generation(error=f"malformed: unexpected response shape ({exc})")

    @staticmethod
    def _parse_generation(response: Any, *, chat: bool) -> Generation:
        choice = _field(response, "choices", 0)
        if chat:
            text = _field(choice, "message", "content")
        else:
            text = _field(choice, "text")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise EndpointRequestError("malformed", "completion text is not a string")
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        logprobs_obj = choice.get("logprobs") if isinstance(choice, dict) else None
        token_logprobs: list[float] | None = None
        if logprobs_obj:
            if chat:
                content = _field(logprobs_obj, "content")
                token_logprobs = _float_list([_field(entry, "logprob") for entry in content or []])
            else:
                token_logprobs = _float_list(_field(logprobs_obj, "token_logprobs"))
        usage = response.get("usage") if isinstance(response, dict) else None
        n_tokens = 0
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            n_tokens = usage["completion_tokens"]
        elif token_logprobs is not None:
            n_tokens = len(token_logprobs)
        return Generation(
            text=text,
            finish_reason=str(finish) if finish is not None else None,
            n_tokens=n_tokens,
            token_logprobs=token_logprobs,
        )

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[Generation]:
        return self._map(self._generate_one, requests, progress)

    # -- log-likelihood ---------------------------------------------------------------------------
    def _loglikelihood_one(self, request: LoglikelihoodRequest) -> Loglikelihood:
        """Echo the prompt with logprobs from /v1/completions and sum the continuation's tokens.
        Servers without echo+logprobs (most chat-only APIs) give a per-request error."""
        full = request.context + request.continuation
        body = {
            "model": None,
            "prompt": full,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        try:
            body["model"] = self.model
            response = self.client.post_json("/completions", body)
            logprobs = _field(response, "choices", 0, "logprobs")
            if not isinstance(logprobs, dict):
                raise EndpointRequestError("unsupported", "endpoint returned no prompt logprobs (echo unsupported)")
            tokens = _field(logprobs, "tokens")
            values = _field(logprobs, "token_logprobs")
            top = logprobs.get("top_logprobs") or []
            if not (isinstance(tokens, list) and isinstance(values, list)) or len(tokens) != len(values):
                raise EndpointRequestError("malformed", "logprobs tokens/token_logprobs are not equal-length lists")
            if not all(isinstance(t, str) for t in tokens):
                raise EndpointRequestError("malformed", "logprobs tokens are not strings")
            # Servers disagree on text_offset (vLLM counts special tokens' text), so the
            # continuation's tokens are found from the token strings themselves: the echoed
            # prompt is the longest token prefix whose text ends with context+continuation
            # (the generated token after it is dropped), and the continuation is read back
            # from its end.
            end = _echo_end(tokens, full)
            total, count, greedy, covered = 0.0, 0, True, 0
            index = end
            while covered < len(request.continuation):
                index -= 1
                if index < 0:
                    raise EndpointRequestError("malformed", "echoed tokens do not cover the continuation")
                covered += len(tokens[index])
                value = values[index]
                if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise EndpointRequestError("malformed", "missing logprob for a continuation token")
                total += float(value)
                count += 1
                if index < len(top) and isinstance(top[index], dict) and top[index]:
                    best = max(float(v) for v in top[index].values())
                    greedy = greedy and float(value) >= best - 1e-6
            if covered != len(request.continuation):
                raise EndpointRequestError(
                    "unsupported", "a token straddles the context/continuation boundary"
                )
            return Loglikelihood(
                logprob=total, is_greedy=greedy, n_tokens=count, n_chars=len(request.continuation)
            )
        except EndpointRequestError as exc:
            return Loglikelihood(error=exc.describe())
        except (TypeError, ValueError, AttributeError) as exc:  # JSON of an unexpected shape
            return Loglikelihood(error=f"malformed: unexpected response shape ({exc})")

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[Loglikelihood]:
        return self._map(self._loglikelihood_one, requests, progress)

    # -- plumbing -------------------------------------------------------------------------------
    def _map(self, fn, requests: Sequence, progress: ProgressCallback | None) -> list:
        """Bounded concurrency; answers in request order; progress counts finished requests."""
        if not requests:
            return []
        try:
            _ = self.model  # resolve the model name once, before fanning out
        except EndpointRequestError:
            pass  # each request will report the failure itself
        results: list = [None] * len(requests)
        done = 0
        done_lock = threading.Lock()

        def run(index: int) -> None:
            nonlocal done
            results[index] = fn(requests[index])
            if progress:
                with done_lock:
                    done += 1
                    progress(done)

        workers = max(1, min(self.client.policy.concurrency, len(requests)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(len(requests))))
        return results

    def check_reachable(self) -> list[str]:
        """GET /v1/models once; raises BackendError when the endpoint cannot serve at all."""
        try:
            return self.list_models()
        except EndpointRequestError as exc:
            raise BackendError(exc.describe()) from None
