"""The benchmark registry: slug -> versioned spec.

The built-in sets (the public benchmarks and a seedless gsm_fresh) are registered on first use.
Extra benchmarks, such as the maintainers' private held-out sets, are added at runtime with
`register(spec)`, e.g.

    from verification.benchmarks.gsm8k import gsm8k_style_spec
    register(gsm8k_style_spec("my_heldout", "v1", my_loader))

Registering a different spec under an existing slug needs `replace=True` (a slug+version must
always mean the same benchmark).
"""

from __future__ import annotations

import threading

from verification.benchmarks import gsm_fresh
from verification.benchmarks.arc import ARCChallengeSpec
from verification.benchmarks.base import BenchmarkSpec
from verification.benchmarks.gpqa import GPQASpec
from verification.benchmarks.gsm8k import GSM8KSpec
from verification.benchmarks.humaneval import HumanEvalSpec
from verification.benchmarks.ifeval import IFEvalSpec
from verification.benchmarks.math_problems import MathSpec
from verification.benchmarks.mmlu import MMLUSpec
from verification.benchmarks.truthfulqa import TruthfulQAMC1Spec, TruthfulQAMC2Spec
from verification.benchmarks.xstest import XSTestSpec

_lock = threading.Lock()
_specs: dict[str, BenchmarkSpec] = {}
_builtins_loaded = False


def _builtin_specs() -> list[BenchmarkSpec]:
    return [
        GSM8KSpec(),
        MMLUSpec(),
        ARCChallengeSpec(),
        TruthfulQAMC1Spec(),
        TruthfulQAMC2Spec(),
        MathSpec("math500", "math500/test.jsonl", "MATH-500"),
        MathSpec("math", "math/test.jsonl", "MATH"),
        HumanEvalSpec(),
        IFEvalSpec(),
        GPQASpec(),
        XSTestSpec(),
        # Seedless: each load draws a fresh set; the pipeline builds a seeded spec per run.
        gsm_fresh.spec(),
    ]


def _ensure_builtins() -> None:
    global _builtins_loaded
    with _lock:
        if _builtins_loaded:
            return
        for spec in _builtin_specs():
            _specs.setdefault(spec.slug, spec)
        _builtins_loaded = True


def register(spec: BenchmarkSpec, *, replace: bool = False) -> BenchmarkSpec:
    _ensure_builtins()
    if not spec.slug or not isinstance(spec.version, str) or not spec.version:
        raise ValueError("a benchmark spec needs a slug and a string version")
    with _lock:
        existing = _specs.get(spec.slug)
        if existing is not None and existing is not spec and not replace:
            raise ValueError(f"benchmark {spec.slug!r} is already registered (pass replace=True)")
        _specs[spec.slug] = spec
    return spec


def unregister(slug: str) -> None:
    _ensure_builtins()
    with _lock:
        _specs.pop(slug, None)


def get(slug: str) -> BenchmarkSpec:
    _ensure_builtins()
    try:
        return _specs[slug]
    except KeyError:
        raise KeyError(f"unknown benchmark {slug!r}; known: {', '.join(sorted(_specs))}") from None


def all_specs() -> list[BenchmarkSpec]:
    _ensure_builtins()
    return [_specs[slug] for slug in sorted(_specs)]
