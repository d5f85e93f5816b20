"""Command line: evaluate a model on benchmarks without the web app.

    python -m verification evaluate SOURCE --benchmarks gsm8k,mmlu --limit 50 \\
        --backend vllm|transformers --json out.json [--revision REV] [--shots K] [--cot]
    python manage.py evaluate ...   (the same, through Django's manage.py)

SOURCE is a Hugging Face repo id (resolved and pinned to a commit through huggingface_hub,
honouring HF_HUB_OFFLINE / HF_HUB_CACHE) or a local model directory. Progress goes to stderr, a
result table to stdout, and the JSON file holds, per benchmark, the measurement with its 95%
Wilson interval, n_errors / n_unparsed and every sample, plus the run record: model source and
sha, backend and package versions, sampling parameters, dataset hashes, code version, timings.

Exit status: 0 measured; 2 bad input (unknown benchmark, unsupported setup, unresolvable
source, missing data, unwritable output); 1 the backend failed; 3 a run finished but is invalid
(error rate above 1%: its number is not a measurement of the model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from verification.backends import Backend, BackendError, backend_kinds, make_backend
from verification.sources import ResolvedSource, ResolveError, resolve

EXIT_OK = 0
EXIT_BACKEND_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INVALID_RUN = 3
REPO_ROOT = Path(__file__).resolve().parent.parent

# (kind, model path, options) -> backend; tests inject one that reuses a running engine.
BackendFactory = Callable[..., Backend]


class BadInput(ValueError):
    """Something the user gave cannot work; the message says what and how to fix it."""


# ---------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verification", description="Verity: re-measure LLM benchmark claims.")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="evaluate a model on benchmarks", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_evaluate_arguments(evaluate)
    return parser


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="Hugging Face repo id (org/name) or a local model directory")
    parser.add_argument("--benchmarks", required=True, help="comma-separated slugs, e.g. gsm8k,mmlu")
    parser.add_argument("--backend", default="vllm", help=f"one of: {', '.join(backend_kinds())} (default vllm)")
    parser.add_argument("--json", dest="json_out", required=True, help="where to write the JSON results")
    parser.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
    parser.add_argument("--subsample", type=int, default=None, help="a seeded random N items instead")
    parser.add_argument("--seed", type=int, default=0, help="seed of --subsample (default 0)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit sha of a hub SOURCE")
    parser.add_argument("--shots", type=int, default=None, help="few-shot examples (default: the benchmark's)")
    parser.add_argument("--cot", action="store_true", help="chain-of-thought exemplars where supported")
    parser.add_argument("--chat-template", action="store_true", help="wrap prompts in the model's chat template")
    parser.add_argument("--datasets-dir", default=None, help="benchmark data (default: $DATASETS_DIR)")
    parser.add_argument("--dtype", default=None, help="model dtype (default: float32 for transformers, auto for vllm)")
    parser.add_argument("--max-model-len", type=int, default=None, help="context window (default: min(4096, model's))")
    parser.add_argument("--batch-size", type=int, default=16, help="transformers batch size (default 16)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def parse_benchmarks(text: str) -> list[str]:
    slugs = [s.strip() for s in text.split(",") if s.strip()]
    if not slugs:
        raise BadInput("--benchmarks is empty: give comma-separated slugs, e.g. gsm8k,mmlu")
    if len(set(slugs)) != len(slugs):
        raise BadInput(f"--benchmarks lists a benchmark twice: {text}")
    return slugs


@dataclass
class Plan:
    """Everything checked before any model is loaded."""

    specs: list[Any]
    setups: dict[str, Any]
    datasets_dir: Path
    json_out: Path


def make_plan(args: argparse.Namespace) -> Plan:
    from verification.benchmarks import registry
    from verification.benchmarks.base import Setup
    from verification.datasets import datasets_dir_from_env

    if args.backend not in backend_kinds():
        raise BadInput(f"unknown backend {args.backend!r}; choose one of: {', '.join(backend_kinds())}")
    for name in ("limit", "subsample"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise BadInput(f"--{name} must be at least 1, not {value}")
    if args.shots is not None and args.shots < 0:
        raise BadInput(f"--shots must be 0 or more, not {args.shots}")
    if args.max_model_len is not None and args.max_model_len < 16:
        raise BadInput(f"--max-model-len {args.max_model_len} is too small")
    specs = []
    for slug in parse_benchmarks(args.benchmarks):
        try:
            specs.append(registry.get(slug))
        except KeyError as error:
            raise BadInput(str(error.args[0])) from error
    setups = {}
    for spec in specs:
        default = spec.default_setup
        setup = Setup(
            shots=default.shots if args.shots is None else args.shots,
            cot=args.cot or default.cot,
            chat_template=args.chat_template or default.chat_template,
        )
        reason = spec.unsupported_reason(setup)
        if reason:
            raise BadInput(f"{spec.slug}: {reason}")
        setups[spec.slug] = setup
    datasets_dir = datasets_dir_from_env(args.datasets_dir)
    if not datasets_dir.is_dir():
        raise BadInput(f"benchmark data directory {datasets_dir} does not exist (set --datasets-dir or DATASETS_DIR)")
    json_out = Path(args.json_out).expanduser()
    if json_out.is_dir():
        raise BadInput(f"--json {json_out} is a directory; give a file name")
    if not json_out.parent.is_dir():
        raise BadInput(f"--json: directory {json_out.parent} does not exist")
    if not os.access(json_out.parent, os.W_OK):
        raise BadInput(f"--json: directory {json_out.parent} is not writable")
    return Plan(specs, setups, datasets_dir, json_out)


# ---------------------------------------------------------------------------------- run record
def code_version() -> dict[str, Any]:
    """The git commit of this checkout (and whether it had local changes), when there is one."""
    def git(*argv: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO_ROOT), *argv], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    from importlib import metadata

    try:
        package = metadata.version("verity")
    except metadata.PackageNotFoundError:
        package = None
    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"git_sha": sha, "git_dirty": bool(status) if sha else None, "package_version": package}


def model_config_len(model_path: Path) -> int | None:
    try:
        config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") or config.get("n_positions")
    return int(value) if isinstance(value, int) else None


def backend_options(args: argparse.Namespace, resolved: ResolvedSource) -> dict[str, Any]:
    window = args.max_model_len or min(4096, model_config_len(resolved.path) or 2048)
    options: dict[str, Any] = {
        "max_model_len": window,
        "model_sha": resolved.sha,
        "repo_id": resolved.repo_id,
        # Benchmarks score text and choice log-likelihoods; per-token logprobs of generations
        # would only slow the engine's output processing down.
        "token_logprobs": False,
    }
    if args.backend == "transformers":
        options["dtype"] = args.dtype or "float32"
        options["batch_size"] = args.batch_size
    elif args.backend == "vllm":
        options["dtype"] = args.dtype or "auto"
    elif args.dtype:
        options["dtype"] = args.dtype
    return options


# ---------------------------------------------------------------------------------- output
class ProgressBar:
    """One line on stderr per benchmark, redrawn in place on a terminal, every 10% otherwise."""

    def __init__(self, label: str, stream: TextIO, enabled: bool = True):
        self.label = label
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self.interactive = stream.isatty()
        self.last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        fraction = done / total if total else 1.0
        decile = int(fraction * 10)
        if not self.interactive and decile == self.last_decile and done != total:
            return
        self.last_decile = decile
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        filled = int(fraction * 30)
        line = f"{self.label:<12} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {rate:.2f} it/s {elapsed:.0f}s"
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        if self.interactive and done == total:
            self.stream.write("\n")
        self.stream.flush()


def setup_label(setup: dict[str, Any]) -> str:
    parts = [f"{setup.get('shots', 0)}-shot"]
    if setup.get("cot"):
        parts.append("cot")
    if setup.get("chat_template"):
        parts.append("chat")
    return " ".join(parts)


def result_table(results: dict[str, dict[str, Any]]) -> str:
    header = ("benchmark", "setup", "n", "measured", "95% CI", "errors", "unparsed", "valid")
    rows = [header]
    for slug, result in results.items():
        rows.append((
            slug,
            setup_label(result["setup"]),
            str(result["n"]),
            f"{result['measured']:.1f}",
            f"[{result['ci_low']:.1f}, {result['ci_high']:.1f}]",
            str(result["n_errors"]),
            str(result["n_unparsed"]),
            "no (error rate > 1%)" if result["invalid"] else "yes",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------- evaluate
def evaluate(
    args: argparse.Namespace,
    *,
    backend_factory: BackendFactory = make_backend,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    argv: Sequence[str] | None = None,
) -> int:
    from verification.benchmarks.base import DatasetUnavailable, UnsupportedSetup
    from verification.runner import run_benchmark

    started_at = datetime.now(timezone.utc)
    clock = time.monotonic()
    plan = make_plan(args)
    resolved = resolve(args.source, args.revision)
    resolve_s = time.monotonic() - clock
    stderr.write(f"model: {resolved.repo_id or resolved.path} @ {resolved.sha} ({resolved.sha_kind})\n")

    clock = time.monotonic()
    backend = backend_factory(args.backend, str(resolved.path), **backend_options(args, resolved))
    backend_start_s = time.monotonic() - clock
    results: dict[str, dict[str, Any]] = {}
    try:
        for spec in plan.specs:
            setup = plan.setups[spec.slug]
            bar = ProgressBar(spec.slug, stderr, enabled=not args.no_progress)
            try:
                outcome = run_benchmark(
                    spec,
                    backend,
                    setup=setup,
                    limit=args.limit,
                    subsample=(args.subsample, args.seed) if args.subsample else None,
                    datasets_dir=plan.datasets_dir,
                    progress=bar,
                )
            except (DatasetUnavailable, UnsupportedSetup, FileNotFoundError) as error:
                raise BadInput(f"{spec.slug}: {error}") from error
            results[spec.slug] = outcome.as_dict(include_samples=True)
        description = backend.describe()
    finally:
        if backend_factory is make_backend:
            backend.close()

    finished_at = datetime.now(timezone.utc)
    payload = {
        "schema": "verity.evaluate/1",
        "command": list(argv) if argv is not None else None,
        "model": resolved.as_dict(),
        "backend": description,
        "code": code_version(),
        "datasets_dir": str(plan.datasets_dir),
        "run_record": {
            "sampling": {slug: r["sampling"] for slug, r in results.items()},
            "dataset_hashes": {slug: r["dataset_hash"] for slug, r in results.items()},
            "setups": {slug: r["setup"] for slug, r in results.items()},
            "benchmark_versions": {slug: r["version"] for slug, r in results.items()},
        },
        "timings": {
            "started_at": started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "resolve_s": resolve_s,
            "backend_start_s": backend_start_s,
            "benchmarks_s": {slug: r["timings"].get("total_s") for slug, r in results.items()},
            "total_s": (finished_at - started_at).total_seconds(),
        },
        "results": results,
    }
    write_json_atomically(plan.json_out, payload)
    stdout.write(result_table(results) + "\n")
    stdout.write(f"results: {plan.json_out}\n")
    stdout.flush()
    return EXIT_INVALID_RUN if any(r["invalid"] for r in results.values()) else EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    backend_factory: BackendFactory = make_backend,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed the usage and the error
        return int(exit_.code or 0)
    try:
        if args.command == "evaluate":
            return evaluate(args, backend_factory=backend_factory, stdout=stdout, stderr=stderr, argv=argv)
    except (BadInput, ResolveError) as error:
        stderr.write(f"error: {error}\n")
        return EXIT_BAD_INPUT
    except BackendError as error:
        stderr.write(f"error: backend failed: {error}\n")
        return EXIT_BACKEND_FAILED
    parser.error(f"unknown command {args.command!r}")
    return EXIT_BAD_INPUT
