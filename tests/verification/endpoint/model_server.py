"""A real OpenAI-compatible HTTP server on 127.0.0.1 backed by in-process tiny models (the
transformers backend), for endpoints that route requests: the gaming wrappers the endpoint check
must catch and the serving changes it must tell apart.

- `literal_recogniser()`: a Reflection-style wrapper's test "is this one of Verity's probes?",
  built from every string literal in verification/ (the identity probes, any prompt list, any
  template): a prompt equal to a literal, containing one of 20+ characters or contained in one.
- `ModelServer(name, route)`: `route(prompt, body)` picks the backend that answers; `system_prompt`
  makes it add a system turn (a serving change, not a different model); `fail_every=k` makes
  every k-th distinct request (in arrival order) fail for good, retries included: an endpoint
  that always fails on a fixed share of its requests (k=200: 0.5%, 50: 2%, 10: 10%).

Answers carry per-token logprobs, as vLLM's do, so the teacher-forced comparison runs too.
"""

from __future__ import annotations

import ast
import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from verification.backends.base import Backend
from verification.records import GenerationRequest, SamplingParams

REPO_ROOT = Path(__file__).resolve().parents[3]
MIN_SUBSTRING = 20


def verification_literals(root: Path = REPO_ROOT / "verification") -> set[str]:
    """Every string literal (f-string parts included) in the engine's public source."""
    literals: set[str] = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip():
                literals.add(node.value.strip())
    return literals


def literal_recogniser(literals: set[str] | None = None) -> Callable[[str], bool]:
    literals = verification_literals() if literals is None else literals
    long_ones = [lit for lit in literals if len(lit) >= MIN_SUBSTRING]

    def recognised(prompt: str) -> bool:
        text = prompt.strip()
        if text in literals:
            return True
        return any(lit in text or (len(text) >= MIN_SUBSTRING and text in lit) for lit in long_ones)

    return recognised


class ModelServer:
    def __init__(
        self,
        served_name: str,
        route: Callable[[str, dict], Backend],
        *,
        system_prompt: str | None = None,
        tokenizer: Any = None,
        fail_every: int | None = None,
    ):
        self.served_name = served_name
        self.fail_every = fail_every
        self._arrivals: dict[str, int] = {}  # distinct request body -> arrival index
        self.n_failed = 0
        self.route = route
        self.system_prompt = system_prompt
        self.tokenizer = tokenizer  # needed to render a system turn with the chat template
        self.routed: Counter[str] = Counter()
        self._lock = threading.Lock()  # one generation at a time: the backends are not thread-safe
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, {"object": "list", "data": [{"id": server.served_name}]})
                return self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if server.fails(body):
                    return self._send(503, {"error": "overloaded"})
                try:
                    payload = server.answer(self.path, body)
                except ValueError as exc:
                    return self._send(400, {"error": str(exc)})
                return self._send(200, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "ModelServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fails(self, body: dict) -> bool:
        if not self.fail_every:
            return False
        key = json.dumps(body, sort_keys=True)
        with self._lock:
            index = self._arrivals.setdefault(key, len(self._arrivals))
            failing = index % self.fail_every == self.fail_every - 1
            self.n_failed += failing
        return failing

    def _request(self, path: str, body: dict) -> tuple[str, GenerationRequest]:
        params = SamplingParams(
            temperature=float(body.get("temperature", 1.0)), top_p=float(body.get("top_p", 1.0)),
            max_tokens=int(body.get("max_tokens", 16)), seed=body.get("seed"),
            stop=tuple(body.get("stop") or ()),
        )
        if path.endswith("/chat/completions"):
            prompt = [m for m in body["messages"] if m.get("role") == "user"][-1]["content"]
            if self.system_prompt is None:
                return prompt, GenerationRequest(prompt, params, chat=True)
            messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            bos = self.tokenizer.bos_token or ""
            if bos and rendered.startswith(bos):
                rendered = rendered[len(bos):]  # the backend adds BOS itself
            return prompt, GenerationRequest(rendered, params, chat=False)
        if path.endswith("/completions"):
            return str(body["prompt"]), GenerationRequest(str(body["prompt"]), params, chat=False)
        raise ValueError(f"unknown path {path}")

    def answer(self, path: str, body: dict) -> dict:
        prompt, request = self._request(path, body)
        backend = self.route(prompt, body)
        with self._lock:
            self.routed[getattr(backend, "label", backend.name)] += 1
            generation = backend.generate([request])[0]
        if generation.error:
            raise ValueError(generation.error)
        logprobs = generation.token_logprobs or []
        usage = {"completion_tokens": generation.n_tokens or len(logprobs)}
        if path.endswith("/chat/completions"):
            return {"choices": [{"message": {"role": "assistant", "content": generation.text},
                                 "finish_reason": generation.finish_reason or "stop",
                                 "logprobs": {"content": [{"token": "", "logprob": lp} for lp in logprobs]}}],
                    "usage": usage}
        return {"choices": [{"text": generation.text, "finish_reason": generation.finish_reason or "stop",
                             "logprobs": {"tokens": [""] * len(logprobs), "token_logprobs": logprobs}}],
                "usage": usage}
