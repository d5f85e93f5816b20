"""Which project files one piece of work passes through, measured rather than guessed.

    with FileWalk() as walk:
        ...post the submit form, run the worker steps, open the model page...
    walk.files  # project files in the order first entered

A file counts when at least one of its functions (or a template in it) runs inside the block.
Whatever runs while a module is being imported (module bodies, class bodies, decorators,
registrations at import) does not count: importing is not passing through. Files outside
leaderboard/, verification/, workers/ and templates/ do not count. Functions are seen through sys.setprofile (every thread
started inside the block too); templates through Django's template_rendered signal, which the test
environment sends for every template and include rendered.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("leaderboard", "verification", "workers")
TEMPLATE_DIR = "templates"


class FileWalk:
    def __init__(self, root: Path = PROJECT_ROOT):
        self.root = root
        self._prefixes = tuple(str(root / name) + "/" for name in CODE_DIRS)
        self._seen: dict[str, None] = {}  # insertion-ordered set of relative paths
        self._lock = threading.Lock()
        self._importing = threading.local()  # per thread: how many module bodies are running
        self._previous: Any = None
        self._previous_thread: Any = None

    @property
    def files(self) -> list[str]:
        return list(self._seen)

    def by_area(self) -> dict[str, list[str]]:
        areas: dict[str, list[str]] = {}
        for path in self._seen:
            areas.setdefault(path.split("/", 1)[0], []).append(path)
        return areas

    def __enter__(self) -> FileWalk:
        from django.test.signals import template_rendered

        template_rendered.connect(self._on_template)
        self._previous = sys.getprofile()
        self._previous_thread = threading.getprofile() if hasattr(threading, "getprofile") else None
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        from django.test.signals import template_rendered

        sys.setprofile(self._previous)
        threading.setprofile(self._previous_thread)
        template_rendered.disconnect(self._on_template)

    def _add(self, relative: str) -> None:
        if relative not in self._seen:
            with self._lock:
                self._seen.setdefault(relative, None)

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        code = frame.f_code
        depth = getattr(self._importing, "depth", 0)
        if code.co_name == "<module>":
            self._importing.depth = depth + (1 if event == "call" else -1)
            return
        if event == "call" and depth == 0 and code.co_filename.startswith(self._prefixes):
            self._add(code.co_filename[len(str(self.root)) + 1 :])

    def _on_template(self, sender: Any, template: Any, **kwargs: Any) -> None:
        origin = getattr(template, "origin", None)
        name = getattr(origin, "name", None) or ""
        if name.startswith(str(self.root / TEMPLATE_DIR) + "/"):
            self._add(name[len(str(self.root)) + 1 :])
