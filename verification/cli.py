"""Command line of the engine, without the web app (`python -m verification COMMAND`):

    evaluate SOURCE --benchmarks gsm8k,mmlu --json out.json [--limit N] [--backend vllm|transformers]
        measure a model on benchmarks; every sample in the JSON
    verify SOURCE [--claims claims.json] [--base BASE] [--json report.json]
        the whole pipeline (prepare -> measure -> conclude): claims judged, checks run, a
        verity.report/1 document written
    classify-refusals IN.csv --json OUT.json
        label (prompt, completion) pairs as refusal or compliance with the safety check's
        classifier (IN.csv columns id,prompt,completion)

`python manage.py evaluate|verify` are the same commands. SOURCE is a Hugging Face repo id (pinned
to a commit and fetched through the model cache, honouring HF_HUB_OFFLINE / HF_HUB_CACHE) or a
local model directory; both go through the same intake guards (safetensors only, no remote code,
size cap). This is the one place the engine reads its environment (verification.config).

Exit status of evaluate: 0 measured; 2 bad input (unknown benchmark, unsupported setup, refused or
unresolvable source, missing data, unwritable output); 1 the backend failed; 3 a run finished but
is invalid (error rate above 1%: its number is not a measurement of the model).
Exit status of verify: 0 a report was written (whatever it flags); 2 the model or the input was
refused (nothing measured); 1 an internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from verification import pipeline
from verification.backends import Backend, BackendError, backend_kinds, make_backend
from verification.claims import ClaimsDoc, ClaimsError, known_benchmarks, load_claims_file
from verification.config import EngineConfig, ImproperlyConfiguredEnv
from verification.endpoint.urlcheck import blocked_hostports_from_urls
from verification.intake import IntakeRefused, IntakeResult, TransientHubError, inspect_source
from verification.modelcache import ModelCache
from verification.report import write_report
from verification.sources import directory_digest

EXIT_OK = 0
EXIT_BACKEND_FAILED = 1
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 2
EXIT_INVALID_RUN = 3

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
    verify = commands.add_parser("verify", help="verify a model's claims and write a verity.report/1 report",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verify_arguments(verify)
    commands.add_parser("classify-refusals", help="label prompt/completion pairs as refusal or compliance",
                        add_help=False)  # handled by verification.safety.cli (see main)
    return parser


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="Hugging Face repo id (org/name) or a local model directory")
    parser.add_argument("--revision", default=None, help="branch, tag or commit sha of a hub SOURCE")
    parser.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
    parser.add_argument("--datasets-dir", default=None, help="benchmark data (default: $DATASETS_DIR)")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--benchmarks", required=True, help="comma-separated slugs, e.g. gsm8k,mmlu")
    parser.add_argument("--backend", default="vllm", help=f"one of: {', '.join(backend_kinds())} (default vllm)")
    parser.add_argument("--json", dest="json_out", required=True, help="where to write the JSON results")
    parser.add_argument("--subsample", type=int, default=None, help="a seeded random N items instead")
    parser.add_argument("--seed", type=int, default=0, help="seed of --subsample (default 0)")
    parser.add_argument("--shots", type=int, default=None, help="few-shot examples (default: the benchmark's)")
    parser.add_argument("--cot", action="store_true", help="chain-of-thought exemplars where supported")
    parser.add_argument("--chat-template", action="store_true", help="wrap prompts in the model's chat template")
    parser.add_argument("--dtype", default=None, help="model dtype (default: float32 for transformers, auto for vllm)")
    parser.add_argument("--max-model-len", type=int, default=None, help="context window (default: min(4096, model's))")
    parser.add_argument("--batch-size", type=int, default=16, help="transformers batch size (default 16)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--claims", default=None, help="claims JSON file")
    parser.add_argument("--base", default=None, help="claimed base model (repo id or directory)")
    parser.add_argument("--endpoint", default=None, help="OpenAI-compatible endpoint URL said to serve the model")
    parser.add_argument("--endpoint-model", default=None, help="model name to ask the endpoint for")
    parser.add_argument("--benchmarks", default=None, help="comma-separated benchmark slugs (default: claimed + core)")
    parser.add_argument("--backend", choices=("vllm", "transformers"), default=None,
                        help="default: $INFERENCE_BACKEND")
    parser.add_argument("--candidate", action="append", default=[], help="alternative base for provenance (repeatable)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the report here (default: stdout)")


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


def check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise BadInput(f"--{name} must be at least 1, not {value}")


def datasets_dir_for(args: argparse.Namespace, config: EngineConfig) -> Path:
    datasets_dir = Path(args.datasets_dir).expanduser() if args.datasets_dir else config.datasets_dir
    if datasets_dir is None or not datasets_dir.is_dir():
        raise BadInput(f"benchmark data directory {datasets_dir} does not exist (set --datasets-dir or DATASETS_DIR)")
    return datasets_dir


def make_plan(args: argparse.Namespace, config: EngineConfig) -> Plan:
    from verification.benchmarks import registry
    from verification.benchmarks.base import Setup

    if args.backend not in backend_kinds():
        raise BadInput(f"unknown backend {args.backend!r}; choose one of: {', '.join(backend_kinds())}")
    check_positive(args, "limit", "subsample")
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
    return Plan(specs, setups, datasets_dir_for(args, config), check_output(args.json_out))


def check_output(value: str) -> Path:
    json_out = Path(value).expanduser()
    if json_out.is_dir():
        raise BadInput(f"--json {json_out} is a directory; give a file name")
    if not json_out.parent.is_dir():
        raise BadInput(f"--json: directory {json_out.parent} does not exist")
    if not os.access(json_out.parent, os.W_OK):
        raise BadInput(f"--json: directory {json_out.parent} is not writable")
    return json_out


def model_cache(config: EngineConfig) -> ModelCache:
    return ModelCache(config.model_cache_dir or config.var_dir / "model_cache", config.model_cache_bytes,
                      token=config.hf_token)


def source_record(result: IntakeResult, path: Path) -> dict[str, Any]:
    """Which exact files were measured: the hub commit, or a digest of a local directory's files."""
    return {
        "source": result.source,
        "repo_id": result.repo_id,
        "revision": result.requested_revision,
        "sha": result.sha or directory_digest(path),
        "sha_kind": "commit" if result.sha else "content",
        "path": str(path),
    }


def evaluate_backend_options(args: argparse.Namespace, result: IntakeResult, path: Path,
                             config: EngineConfig) -> dict[str, Any]:
    # Benchmarks score text and choice log-likelihoods; per-token logprobs of generations
    # would only slow the engine's output processing down.
    overrides: dict[str, Any] = {"max_model_len": args.max_model_len, "token_logprobs": False}
    if args.backend == "transformers":
        overrides.update(dtype=args.dtype or "float32", batch_size=args.batch_size)
    elif args.backend == "vllm":
        overrides["dtype"] = args.dtype or "auto"
    elif args.dtype:
        overrides["dtype"] = args.dtype
    return pipeline.backend_options(args.backend, path, sha=result.sha, repo_id=result.repo_id,
                                    engine=config.engine if args.backend == "vllm" else None, **overrides)


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
    config: EngineConfig,
    backend_factory: BackendFactory = make_backend,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    argv: Sequence[str] | None = None,
) -> int:
    started_at = datetime.now(timezone.utc)
    clock = time.monotonic()
    plan = make_plan(args, config)
    result = inspect_source(args.source, args.revision, config.max_model_bytes, token=config.hf_token)
    with pipeline.model_files(result, model_cache(config)) as path:
        model = source_record(result, path)
        resolve_s = time.monotonic() - clock
        stderr.write(f"model: {model['repo_id'] or path} @ {model['sha']} ({model['sha_kind']})\n")
        clock = time.monotonic()
        backend = backend_factory(args.backend, str(path), **evaluate_backend_options(args, result, path, config))
        backend_start_s = time.monotonic() - clock
        try:
            results = run_plan(plan, backend, args, stderr)
            description = backend.describe()
        finally:
            if backend_factory is make_backend:
                backend.close()
    finished_at = datetime.now(timezone.utc)
    payload = {
        "schema": "verity.evaluate/1",
        "command": list(argv) if argv is not None else None,
        "model": model,
        "backend": description,
        "code": pipeline.code_info(),
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


def run_plan(plan: Plan, backend: Backend, args: argparse.Namespace, stderr: TextIO) -> dict[str, dict[str, Any]]:
    from verification.benchmarks.base import DatasetUnavailable, UnsupportedSetup
    from verification.runner import run_benchmark

    results: dict[str, dict[str, Any]] = {}
    for spec in plan.specs:
        bar = ProgressBar(spec.slug, stderr, enabled=not args.no_progress)
        try:
            outcome = run_benchmark(
                spec,
                backend,
                setup=plan.setups[spec.slug],
                limit=args.limit,
                subsample=(args.subsample, args.seed) if args.subsample else None,
                datasets_dir=plan.datasets_dir,
                progress=bar,
            )
        except (DatasetUnavailable, UnsupportedSetup, FileNotFoundError) as error:
            raise BadInput(f"{spec.slug}: {error}") from error
        results[spec.slug] = outcome.as_dict(include_samples=True)
    return results


# ---------------------------------------------------------------------------------- verify
def verify_request(args: argparse.Namespace, config: EngineConfig) -> pipeline.VerifyRequest:
    try:
        claims = load_claims_file(args.claims) if args.claims else ClaimsDoc()
    except ClaimsError as error:
        raise BadInput(str(error)) from error
    benchmarks = None
    if args.benchmarks:
        benchmarks = [slug.strip().lower() for slug in args.benchmarks.split(",") if slug.strip()]
        unknown = sorted(set(benchmarks) - set(known_benchmarks()))
        if unknown:
            raise BadInput(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known_benchmarks())}")
    check_positive(args, "limit")
    if args.json_out:
        check_output(args.json_out)
    return pipeline.VerifyRequest(
        source=args.source,
        revision=args.revision,
        claims=claims,
        base=args.base,
        endpoint=args.endpoint,
        endpoint_model=args.endpoint_model,
        benchmarks=benchmarks,
        limit=args.limit if args.limit is not None else config.default_eval_limit,
        backend=args.backend or config.inference_backend,
        candidates=list(args.candidate),
        datasets_dir=datasets_dir_for(args, config),
        max_model_bytes=config.max_model_bytes,
        core=config.core_benchmarks,
        engine=dict(config.engine),
        chunk_size=config.chunk_size,
        token=config.hf_token,
        enabled_checks=config.checks,
        # The CLI user checks their own server (`vllm serve` on localhost); the web pipeline
        # never gets this allowance.
        check_options={
            "endpoint_allow_loopback": True,
            "endpoint_blocked_hostports": sorted(blocked_hostports_from_urls(config.service_urls)),
            "endpoint_private_dir": str(config.private_benchmarks_dir or "") or None,
        },
    )


def verify(args: argparse.Namespace, *, config: EngineConfig, stdout: TextIO = sys.stdout,
           stderr: TextIO = sys.stderr) -> int:
    request = verify_request(args, config)
    try:
        report = pipeline.verify(request, cache=model_cache(config))
    except IntakeRefused as refused:
        stderr.write(f"error: refused at intake ({refused.code}): {refused.reason}\n")
        return EXIT_REFUSED
    if args.json_out:
        path = write_report(report, args.json_out)
        stderr.write(f"report written to {path} ({len(report['flags'])} flag(s))\n")
    else:
        stdout.write(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return EXIT_OK


# ---------------------------------------------------------------------------------- main
def main(
    argv: Sequence[str] | None = None,
    *,
    backend_factory: BackendFactory = make_backend,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "classify-refusals":  # its own parser: IN.csv --json OUT.json
        from verification.safety.cli import main as classify_refusals

        return classify_refusals(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed the usage and the error
        return int(exit_.code or 0)
    try:
        config = EngineConfig.from_env()
        if args.command == "evaluate":
            return evaluate(args, config=config, backend_factory=backend_factory, stdout=stdout, stderr=stderr,
                            argv=argv)
        return verify(args, config=config, stdout=stdout, stderr=stderr)
    except (BadInput, ImproperlyConfiguredEnv) as error:
        stderr.write(f"error: {error}\n")
        return EXIT_BAD_INPUT
    except IntakeRefused as refused:
        stderr.write(f"error: {refused.reason}\n")
        return EXIT_BAD_INPUT
    except BackendError as error:
        stderr.write(f"error: backend failed: {error}\n")
        return EXIT_BACKEND_FAILED
    except TransientHubError as error:
        stderr.write(f"error: the Hugging Face Hub could not be reached: {error}\n")
        return EXIT_INTERNAL
    except Exception as error:  # noqa: BLE001 - one line, not a traceback, for any internal failure
        stderr.write(f"error: internal error: {type(error).__name__}: {error}\n")
        return EXIT_INTERNAL
