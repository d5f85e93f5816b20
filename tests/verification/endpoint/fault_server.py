"""A real OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on purpose.

The first path segment picks the behaviour, so one server serves every case:
    http://127.0.0.1:PORT/<mode>/v1/...
Modes: ok, garbage, wrongshape, flaky500 (two 500s then ok), always500, ratelimit (one 429 with
Retry-After then ok), always429, slow (answers after `slow_s`), drip (headers, then a body one
byte every 0.3 s), redirect (302 to the metadata address), hangup (closes without answering),
nologprobs (completions without echo support), claude (answers name Claude),
partial (requests about the ocean always fail), huge (50k-character answers), infinite
(-Infinity logprobs).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    def __init__(self, slow_s: float = 3.0):
        self.slow_s = slow_s
        self.hits: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                parts = self.path.split("/", 2)
                mode = parts[1] if len(parts) > 1 else ""
                rest = "/" + (parts[2] if len(parts) > 2 else "")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                with server._lock:
                    server.hits[mode] += 1
                    count = server.hits[mode]
                    server.bodies.append({"mode": mode, "path": rest, "body": body})
                server.respond(self, mode, rest, body, count)

            do_GET = _handle
            do_POST = _handle

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # clients hanging up on the slow/drip modes is the point of those modes

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def start(self) -> "FaultServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def ok_body(rest: str, body: dict, text: str = "hello world") -> bytes:
        if rest.endswith("/models"):
            return json.dumps({"object": "list", "data": [{"id": "served-model"}]}).encode()
        if rest.endswith("/chat/completions"):
            return json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                 "usage": {"completion_tokens": 2}}
            ).encode()
        return json.dumps({"choices": [{"text": text, "finish_reason": "stop"}]}).encode()

    def respond(self, h, mode: str, rest: str, body: dict, count: int) -> None:
        if rest.endswith("/models") and mode not in {"garbage", "always500", "always429", "hangup", "slow", "drip", "redirect"}:
            return h._send(200, self.ok_body(rest, body))
        if mode == "ok":
            return h._send(200, self.ok_body(rest, body))
        if mode == "claude":
            prompt = json.dumps(body.get("messages") or body.get("prompt") or "")
            answer = "I am Claude, made by Anthropic." if "which model" in prompt.lower() else "Sure: ."
            return h._send(200, self.ok_body(rest, body, answer))
        if mode == "garbage":
            return h._send(200, b"<html>not json{")
        if mode == "wrongshape":
            return h._send(200, json.dumps({"choices": 5}).encode())
        if mode == "flaky500":
            if count % 3 != 0:  # two failures, then an answer, repeating
                return h._send(500, b'{"error": "overloaded"}')
            return h._send(200, self.ok_body(rest, body))
        if mode == "always500":
            return h._send(503, b'{"error": "down for maintenance"}')
        if mode == "ratelimit":
            if count % 2 == 1:
                return h._send(429, b'{"error": "slow down"}', {"Retry-After": "0.1"})
            return h._send(200, self.ok_body(rest, body))
        if mode == "always429":
            return h._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
        if mode == "slow":
            time.sleep(self.slow_s)
            return h._send(200, self.ok_body(rest, body))
        if mode == "drip":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "1000")
            h.end_headers()
            try:
                for _ in range(20):
                    h.wfile.write(b" ")
                    h.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass
            return None
        if mode == "redirect":
            return h._send(302, b"{}", {"Location": "http://169.254.169.254/latest/meta-data"})
        if mode == "hangup":
            h.close_connection = True
            h.connection.shutdown(2)
            return None
        if mode == "huge":  # a very long answer (stored texts must be capped)
            return h._send(200, self.ok_body(rest, body, "x" * 50_000))
        if mode == "infinite":  # Python's json accepts -Infinity: logprobs no server should send
            return h._send(200, json.dumps({"choices": [{"message": {"content": "4"}, "logprobs": {
                "content": [{"token": "4", "logprob": float("-inf")}]}, "finish_reason": "stop"}]}).encode())
        if mode == "partial":  # one prompt always fails, the others answer
            if "ocean" in json.dumps(body):
                return h._send(400, b'{"error": "content policy"}')
            return h._send(200, self.ok_body(rest, body))
        if mode == "nologprobs":
            if body.get("echo"):
                return h._send(400, b'{"error": "echo is not supported"}')
            return h._send(200, self.ok_body(rest, body))
        return h._send(404, b'{"error": "unknown mode"}')
