"""Load test of the public site: 10,000 models with 100,000 results in PostgreSQL, then the
leaderboard page and the JSON API under concurrent load through gunicorn.

    .venv/bin/python performance/site_load.py                 # seed (if needed) + measure
    .venv/bin/python performance/site_load.py --reseed --duration 20 --concurrency 8

It uses a database of its own (default `verity_load` on the DATABASE_URL server), whose schema is
created from the current models (no migrations needed), so it never touches dev or test data.
The load generator is a bounded Python client (processes x threads, one request at a time per
thread, fixed duration) on 127.0.0.1; it shares the CPUs with the server, so the figures are a
floor for what the server does on its own.
Targets (2 cores): leaderboard page p95 <= 100 ms, API >= 500 requests/s.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

N_MODELS = 10_000
RESULTS_PER_MODEL = 10
BENCHMARKS = ("gsm8k", "mmlu", "arc_challenge", "truthfulqa_mc1", "math500", "humaneval", "ifeval",
              "truthfulqa_mc2", "math", "gsm_fresh")
FAMILIES = ("llama", "mistral", "qwen", "gemma", "phi", "falcon", "olmo", "deepseek")
LICENSES = ("apache-2.0", "mit", "llama3.1", "gemma", "cc-by-nc-4.0", "other")
SIZES = (125_000_000, 1_100_000_000, 3_000_000_000, 7_000_000_000, 13_000_000_000, 34_000_000_000, 70_000_000_000)


def load_database_url(base_url: str, name: str) -> str:
    parsed = urlparse(base_url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise SystemExit(f"site_load needs PostgreSQL; DATABASE_URL is {base_url!r}")
    return urlunparse(parsed._replace(path=f"/{name}"))


def ensure_database(url: str, recreate: bool) -> bool:
    """Create the load database if missing (or recreate it). Returns True when it is new."""
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and recreate:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            return True
    return False


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    os.environ.setdefault("DEBUG", "1")
    import django
    from django.conf import settings

    # The schema comes straight from the models (syncdb), so the benchmark runs whatever state
    # the migrations are in.
    settings.MIGRATION_MODULES = _NoMigrations()
    django.setup()


class _NoMigrations(dict):
    """Every app synced from its models (what pytest-django's --nomigrations does)."""

    def __contains__(self, item: object) -> bool:
        return True

    def __getitem__(self, item: str) -> None:
        return None


def create_schema() -> None:
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def _sha(i: int, salt: str = "") -> str:
    return hashlib.sha1(f"{salt}{i}".encode()).hexdigest()


def _random_results(rng: random.Random, run: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """One model's results ({slug: BenchmarkResult}, unsaved) around a random skill, and the
    scores it claims (about 30% of benchmarks, a few far above the measurement)."""
    from leaderboard.models import BenchmarkResult
    from verification.stats import wilson_interval

    per_model, claimed = {}, {}
    skill = rng.uniform(0.1, 0.9)
    for slug in BENCHMARKS[:RESULTS_PER_MODEL]:
        n = 500
        correct = max(0, min(n, int(rng.gauss(skill, 0.1) * n)))
        low, high = wilson_interval(correct, n)
        measured = 100 * correct / n
        claim = None
        if rng.random() < 0.3:
            claim = round(min(100.0, measured + rng.choice([0.5, 1.0, 2.0, 12.0])), 1)
            claimed[slug] = claim
        per_model[slug] = BenchmarkResult(
            run=run, benchmark=slug, benchmark_version="1", setup={"shots": 0}, setup_key='{"shots":0}',
            measured=measured, ci_low=min(100 * low, measured), ci_high=max(100 * high, measured), n=n,
            claimed=claim, verdict=("inconsistent" if claim and claim - measured > 10 else
                                    "consistent" if claim else "unclaimed"),
        )
    return per_model, claimed


def seed(n_models: int, seed_value: int = 0) -> None:
    """Bulk-insert submissions, runs, results, claims, flags, then the precomputed rows (built with
    the same entry_values/badge rules as the live service)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from leaderboard.models import (
        BenchmarkResult,
        Claim,
        EvaluationRun,
        Flag,
        LeaderboardEntry,
        ModelSubmission,
    )
    from leaderboard.services.leaderboard import entry_values, size_class_for

    rng = random.Random(seed_value)
    started = time.monotonic()
    user, _ = get_user_model().objects.get_or_create(username="load-author")
    batch = 1000
    for start in range(0, n_models, batch):
        with transaction.atomic():
            chunk = range(start, min(start + batch, n_models))
            submissions = ModelSubmission.objects.bulk_create(
                ModelSubmission(
                    repo_id=f"org{i % 997}/model-{i}", pinned_sha=_sha(i), submitter=user,
                    claimed_base=f"{FAMILIES[i % len(FAMILIES)]}-org/{FAMILIES[i % len(FAMILIES)]}-base",
                    status="verified", intake={"parameters": SIZES[i % len(SIZES)], "license": LICENSES[i % len(LICENSES)]},
                )
                for i in chunk
            )
            runs = EvaluationRun.objects.bulk_create(
                EvaluationRun(submission=s, model_repo=s.repo_id, model_sha=s.pinned_sha, backend="vllm", status="done",
                              limit=None, progress_done=1000, progress_total=1000)
                for s in submissions
            )
            results, claims, flags, entries = [], [], [], []
            for submission, run in zip(submissions, runs):
                per_model, claimed = _random_results(rng, run)
                results.extend(per_model.values())
                claims.extend(Claim(submission=submission, benchmark=slug, score=score) for slug, score in claimed.items())
                flagged = any(r.verdict == "inconsistent" for r in per_model.values())
                if flagged:
                    flags.append(Flag(submission=submission, kind="score_mismatch", severity="critical",
                                      summary="claimed above the measurement", evidence={}))
                values = entry_values(claimed, per_model)
                entries.append(LeaderboardEntry(
                    submission=submission, repo_id=submission.repo_id, pinned_sha=submission.pinned_sha,
                    average=values.average, scores=values.scores, claimed=values.claimed, verdicts=values.verdicts,
                    max_delta=values.max_delta, badge="flagged" if flagged else "verified",
                    n_params=submission.intake["parameters"], size_class=size_class_for(submission.intake["parameters"]),
                    base_family=FAMILIES[submission.pk % len(FAMILIES)], license=submission.intake["license"],
                ))
            BenchmarkResult.objects.bulk_create(results, batch_size=5000)
            Claim.objects.bulk_create(claims, batch_size=5000)
            Flag.objects.bulk_create(flags, batch_size=5000)
            LeaderboardEntry.objects.bulk_create(entries, batch_size=5000)
        print(f"  seeded {min(start + batch, n_models)}/{n_models} models ({time.monotonic() - started:.0f}s)", flush=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def counts() -> dict[str, int]:
    from leaderboard.models import BenchmarkResult, LeaderboardEntry, ModelSubmission

    return {"models": ModelSubmission.objects.count(), "results": BenchmarkResult.objects.count(),
            "entries": LeaderboardEntry.objects.count()}


# --- server and load -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(database_url: str, port: int, workers: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "DEBUG": "0", "SECRET_KEY": "site-load-" + "x" * 40,
                "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING"})
    env.pop("VERITY_TEST_DB_NAME", None)
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "leaderboard.wsgi:application", "-b", f"127.0.0.1:{port}",
         "-w", str(workers), "--worker-class", "gthread", "--threads", "2", "--keep-alive", "5",
         "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise SystemExit(f"gunicorn did not answer on :{port}; see {log_path}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _client_process(port: int, paths: list[str], threads: int, duration: float, queue) -> None:
    """One load process: `threads` threads, each a keep-alive connection sending one request at a
    time until the deadline. Reports (latencies, errors)."""
    deadline = time.monotonic() + duration
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = offset
        local: list[float] = []
        local_errors = 0
        while time.monotonic() < deadline:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    local_errors += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            except (OSError, http.client.HTTPException):
                local_errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            local.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(local)
            errors[0] += local_errors

    pool = [threading.Thread(target=worker, args=(random.randrange(1_000_000),)) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put((latencies, errors[0]))


def measure(port: int, name: str, paths: list[str], concurrency: int, duration: float, processes: int = 2) -> dict:
    queue = multiprocessing.Queue()
    per_process = max(1, concurrency // processes)
    procs = [multiprocessing.Process(target=_client_process, args=(port, paths, per_process, duration, queue))
             for _ in range(processes)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        got, errs = queue.get(timeout=duration + 120)
        latencies.extend(got)
        errors += errs
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {
        "scenario": name, "concurrency": per_process * processes, "requests": len(latencies), "errors": errors,
        "seconds": round(elapsed, 1), "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * quantiles[49], 1), "p95_ms": round(1000 * quantiles[94], 1),
        "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
    }


def scenarios() -> dict[str, list[str]]:
    families = list(FAMILIES)
    return {
        "leaderboard page (default order)": ["/"],
        "leaderboard page (filters, sorts, search, pages)": [
            "/?page=7", "/?sort=-gsm8k", f"/?family={families[2]}&hide_flagged=on", "/?size=3-9B&sort=delta",
            "/?q=model-77", "/?license=mit&page=3", "/?sort=mmlu", "/?page=150",
        ],
        "API /api/leaderboard": ["/api/leaderboard", "/api/leaderboard?page=3", "/api/leaderboard?sort=-mmlu",
                                 f"/api/leaderboard?family={families[1]}"],
        # 800 distinct query strings, so most requests miss the short render cache: the cost of
        # building a page from the precomputed rows.
        "leaderboard page, uncached (800 distinct pages x sorts)": [
            f"/?page={page}&sort={sort}" for page in range(1, 201) for sort in ("-average", "-gsm8k", "delta", "-mmlu")
        ],
        "API /api/leaderboard, uncached (800 distinct)": [
            f"/api/leaderboard?page={page}&sort={sort}" for page in range(1, 201)
            for sort in ("-average", "-gsm8k", "delta", "-mmlu")
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="verity_load")
    parser.add_argument("--models", type=int, default=N_MODELS)
    parser.add_argument("--reseed", action="store_true", help="drop and re-create the load database")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes (2 threads each)")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    url = load_database_url(base_url, args.database)
    fresh = ensure_database(url, args.reseed)
    setup_django(url)
    if fresh:
        create_schema()
    have = counts()
    if have["entries"] < args.models:
        print(f"seeding {args.models} models x {RESULTS_PER_MODEL} results into {args.database} ...", flush=True)
        if not fresh:
            from django.db import connection

            connection.close()
            ensure_database(url, True)
            create_schema()
        seed(args.models)
        have = counts()
    print(f"database {args.database}: {have}", flush=True)

    port = free_port()
    log_path = REPO_ROOT / "var" / "site_load_gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = start_gunicorn(url, port, args.workers, log_path)
    try:
        report = {"database": args.database, "rows": have, "workers": args.workers, "threads_per_worker": 2,
                  "cpus": os.cpu_count(), "loadavg_before": os.getloadavg(), "results": []}
        for name, paths in scenarios().items():
            measure(port, name, paths, 2, 2.0)  # warm-up: connections, caches, first queries
            row = measure(port, name, paths, args.concurrency, args.duration)
            report["results"].append(row)
            print(json.dumps(row), flush=True)
        report["loadavg_after"] = os.getloadavg()
    finally:
        stop(server)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    page = next(r for r in report["results"] if r["scenario"].startswith("leaderboard page (default"))
    api_row = next(r for r in report["results"] if r["scenario"].startswith("API"))
    print(f"\nleaderboard page p95 {page['p95_ms']} ms (target <= 100); API {api_row['req_per_s']} req/s (target >= 500); "
          f"load average {report['loadavg_before'][0]:.1f} -> {report['loadavg_after'][0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
