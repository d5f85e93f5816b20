"""Count the Hugging Face Hub look-ups a piece of code makes.

    with HubLookups() as lookups:
        ...one submission through the worker steps...
    lookups.total, lookups.by_function, lookups.calls

Every public huggingface_hub function that asks the Hub (or, offline, the local HF cache standing
in for it) about a repo is wrapped: the module-level functions (`snapshot_download`,
`hf_hub_download`, `model_info`, ...) and the same methods of `HfApi`. Only outermost calls count:
a `snapshot_download` that calls `hf_hub_download` per file is one look-up. Offline (as in the
tests) a look-up is a `snapshot_download(local_files_only=True)` resolving a ref in the cache;
online the same code asks the Hub with `model_info`: the count is the same.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# huggingface_hub's names that look a repo up (module functions and HfApi methods alike).
LOOKUP_FUNCTIONS = (
    "snapshot_download",
    "hf_hub_download",
    "model_info",
    "repo_info",
    "list_repo_files",
    "list_repo_tree",
    "list_repo_refs",
    "list_repo_commits",
    "get_safetensors_metadata",
    "get_paths_info",
    "file_exists",
    "repo_exists",
    "revision_exists",
    "try_to_load_from_cache",
    "scan_cache_dir",
)


@dataclass
class Call:
    function: str
    repo_id: str | None
    revision: str | None
    local_files_only: bool
    caller: str  # the project function that asked: "path:function"
    chain: tuple[str, ...] = ()  # the project functions above it, innermost first


@dataclass
class HubLookups:
    """A context manager that records the outermost huggingface_hub look-ups made inside it."""

    calls: list[Call] = field(default_factory=list)
    _patches: list[tuple[Any, str, Any]] = field(default_factory=list)
    _depth: threading.local = field(default_factory=threading.local)

    @property
    def total(self) -> int:
        return len(self.calls)

    @property
    def by_function(self) -> Counter[str]:
        return Counter(call.function for call in self.calls)

    @property
    def by_caller(self) -> Counter[str]:
        return Counter(call.caller for call in self.calls)

    @property
    def by_repo(self) -> Counter[str]:
        return Counter(call.repo_id or "?" for call in self.calls)

    def summary(self) -> str:
        functions = ", ".join(f"{name} x{n}" for name, n in sorted(self.by_function.items()))
        repos = ", ".join(f"{name} x{n}" for name, n in sorted(self.by_repo.items()))
        return f"{self.total} Hub look-up(s): {functions or 'none'}; per repo: {repos or 'none'}"

    def __enter__(self) -> HubLookups:
        import huggingface_hub
        from huggingface_hub import HfApi, file_download, hf_api

        modules = [huggingface_hub, hf_api, file_download]
        try:
            from huggingface_hub import _snapshot_download

            modules.append(_snapshot_download)
        except ImportError:  # a future huggingface_hub may move it
            pass
        for name in LOOKUP_FUNCTIONS:
            for module in modules:
                # getattr, not __dict__: huggingface_hub exports its names lazily.
                original = getattr(module, name, None)
                if callable(original):
                    self._patch(module, name, self._wrap(name, original, bound=False))
            original = HfApi.__dict__.get(name)
            if callable(original):
                self._patch(HfApi, name, self._wrap(name, original, bound=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self._patches):
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._patches.clear()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patches.append((owner, name, owner.__dict__.get(name, _ABSENT)))
        setattr(owner, name, replacement)

    def _wrap(self, name: str, original: Any, *, bound: bool) -> Any:
        lookups = self

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(lookups._depth, "value", 0)
            caller = sys._getframe(1)
            if depth == 0 and _called_from_project(caller):
                positional = args[1:] if bound else args
                repo_id = kwargs.get("repo_id", positional[0] if positional else None)
                chain = _project_chain(caller)
                lookups.calls.append(
                    Call(name, repo_id if isinstance(repo_id, str) else None, kwargs.get("revision"),
                         bool(kwargs.get("local_files_only")), chain[0], chain[1:])
                )
            lookups._depth.value = depth + 1
            try:
                return original(*args, **kwargs)
            finally:
                lookups._depth.value = depth

        return wrapper


_ABSENT = object()
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = tuple(str(PROJECT_ROOT / name) + "/" for name in ("leaderboard", "verification", "workers"))


def _project_chain(frame: Any, limit: int = 6) -> tuple[str, ...]:
    chain = []
    while frame is not None and len(chain) < limit:
        if _called_from_project(frame):
            chain.append(f"{Path(frame.f_code.co_filename).relative_to(PROJECT_ROOT)}:{frame.f_code.co_name}")
        frame = frame.f_back
    return tuple(chain)


def _called_from_project(frame: Any) -> bool:
    """Look-ups made by the project's code, not by libraries (transformers reading a local
    model directory) or by the tests' own set-up."""
    return frame.f_code.co_filename.startswith(PROJECT_PACKAGES)
