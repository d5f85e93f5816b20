"""Load test of the public site: 10,000 models with 100,000 results and 10 M per-sample rows in
PostgreSQL, then the leaderboard page, the JSON API, model pages, their sample explorer and the
compare page under concurrent load through gunicorn, each uncached and cached.

    .venv/bin/python performance/site_load.py                 # seed (if needed) + measure
    .venv/bin/python performance/site_load.py --reseed --duration 20 --concurrency 8
    .venv/bin/python performance/site_load.py --samples 1000000   # a smaller per-sample table

It uses a database of its own (default `verity_load` on the DATABASE_URL server), whose schema is
created from the current models (no migrations needed), so it never touches dev or test data.
The per-sample rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series, with
the table's indexes and foreign key dropped during the load and rebuilt after, as a restore does),
which is faster than any client-side COPY since no row crosses the socket.
"Uncached" runs gunicorn with Django's DummyCache (no render cache, no cached counts or filter
menus: every request does all of its work); "cached" runs it with the Redis cache the site uses
in production (REDIS_URL). About 14% of the models are partial (one standard benchmark not
measured) and about 3% have an invalid result (harness errors above the limit), as on a real board.
The server is gunicorn as docker-compose.yml runs it: 3 sync workers, each serving one request
at a time, the waiting connections taken first come, first served (threaded workers with
keep-alive tie each client to one worker, and a worker holding three clients made the slowest
requests several times slower than the median).
The load generator is a bounded Python client (processes x threads, one request at a time per
thread, fixed duration) on 127.0.0.1; it shares the CPUs with the server, so the figures are a
floor for what the server does on its own.
Targets (2 cores, 8 clients): p95 <= 100 ms uncached for the leaderboard, a model page and compare.
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


def _random_results(rng: random.Random, run: Any, i: int) -> tuple[dict[str, Any], dict[str, float]]:
    """One model's results ({slug: BenchmarkResult}, unsaved) around a random skill, and the
    scores it claims (about 30% of benchmarks, a few far above the measurement). One model in
    seven lacks one standard benchmark (partial); one in 29 has an invalid result (5% errors)."""
    from leaderboard.models import BenchmarkResult
    from verification.stats import wilson_interval

    per_model, claimed = {}, {}
    skill = rng.uniform(0.1, 0.9)
    missing = BENCHMARKS[(i // 7) % 7] if i % 7 == 3 else None
    invalid = BENCHMARKS[(i // 29) % 7] if i % 29 == 5 else None
    for slug in BENCHMARKS[:RESULTS_PER_MODEL]:
        if slug == missing:
            continue
        n = 500
        correct = max(0, min(n, int(rng.gauss(skill, 0.1) * n)))
        low, high = wilson_interval(correct, n)
        measured = 100 * correct / n
        claim = None
        if rng.random() < 0.3:
            claim = round(min(100.0, measured + rng.choice([0.5, 1.0, 2.0, 12.0])), 1)
            claimed[slug] = claim
        verdict = ("inconsistent" if claim and claim - measured > 10 else "consistent" if claim else "unclaimed")
        per_model[slug] = BenchmarkResult(
            run=run, benchmark=slug, benchmark_version="1", setup={"shots": 0}, setup_key='{"shots":0}',
            measured=measured, ci_low=min(100 * low, measured), ci_high=max(100 * high, measured), n=n,
            n_errors=25 if slug == invalid else 0, claimed=claim,
            verdict="invalid" if slug == invalid else verdict,
        )
    return per_model, claimed


def _seed_chunk(rng: random.Random, user: Any, chunk: range) -> None:
    """One transaction's worth of models: submissions, runs, results, claims, flags and the
    precomputed rows (built with the same entry_values rule as the live service)."""
    from leaderboard.models import BenchmarkResult, Claim, EvaluationRun, Flag, LeaderboardEntry, ModelSubmission
    from leaderboard.services.leaderboard import entry_values, size_class_for

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
                      limit=None, progress_done=1000, progress_total=1000,
                      benchmarks=[{"slug": slug, "setup": {"shots": 0}} for slug in BENCHMARKS])
        for s in submissions
    )
    results, claims, flags, entries = [], [], [], []
    for i, submission, run in zip(chunk, submissions, runs):
        per_model, claimed = _random_results(rng, run, i)
        results.extend(per_model.values())
        claims.extend(Claim(submission=submission, benchmark=slug, score=score) for slug, score in claimed.items())
        flagged = any(r.verdict == "inconsistent" for r in per_model.values())
        if flagged:
            flags.append(Flag(submission=submission, kind="score_mismatch", severity="critical",
                              summary="claimed above the measurement", evidence={}))
        values = entry_values(claimed, per_model)
        entries.append(LeaderboardEntry(
            submission=submission, repo_id=submission.repo_id, pinned_sha=submission.pinned_sha,
            average=values.average, complete=values.complete, scores=values.scores, claimed=values.claimed,
            verdicts=values.verdicts, max_delta=values.max_delta, badge="flagged" if flagged else "verified",
            n_params=submission.intake["parameters"], size_class=size_class_for(submission.intake["parameters"]),
            base_family=FAMILIES[submission.pk % len(FAMILIES)], license=submission.intake["license"],
        ))
    BenchmarkResult.objects.bulk_create(results, batch_size=5000)
    Claim.objects.bulk_create(claims, batch_size=5000)
    Flag.objects.bulk_create(flags, batch_size=5000)
    LeaderboardEntry.objects.bulk_create(entries, batch_size=5000)


def seed(n_models: int, seed_value: int = 0) -> None:
    """Bulk-insert the models in transactions of 1,000, then VACUUM ANALYZE: a live database's
    autovacuum keeps the visibility map set, which index-only scans (the board's counts) need, so
    a freshly loaded one is measured in that state, not in the state right after the load."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    rng = random.Random(seed_value)
    started = time.monotonic()
    user, _ = get_user_model().objects.get_or_create(username="load-author")
    batch = 1000
    for start in range(0, n_models, batch):
        with transaction.atomic():
            _seed_chunk(rng, user, range(start, min(start + batch, n_models)))
        print(f"  seeded {min(start + batch, n_models)}/{n_models} models ({time.monotonic() - started:.0f}s)", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


# The per-sample rows' generated columns (everything else gets the field's default). `r` is the
# benchmark result the rows belong to, `i` the item's index; about 0.5% of items errored and 2%
# unparsed, the rest correct with the result's measured accuracy.
_SAMPLE_COLUMNS = {
    "run_id": "r.run_id",
    "benchmark": "r.benchmark",
    "setup_key": "r.setup_key",
    "index": "i",
    "item_id": "r.benchmark || '-' || i",
    "prompt": "'Question ' || i || ': ' || repeat(md5(r.id::text || '-' || i), 4)",
    "output": "'Let us think step by step. ' || md5(i::text || r.id::text) || ' The answer is ' || (i %% 97)",
    "extracted": "CASE WHEN h.v %% 50 = 7 THEN NULL ELSE (i %% 97)::text END",
    "gold": "(i %% 97)::text",
    "correct": "(h.v %% 200 <> 3 AND h.v %% 50 <> 7 AND h.v %% 1000 < r.measured * 10)",
    "score": "(h.v %% 200 <> 3 AND h.v %% 50 <> 7 AND h.v %% 1000 < r.measured * 10)::int::float",
    "error": "CASE WHEN h.v %% 200 = 3 THEN 'timeout' END",
    "unparsed": "(h.v %% 50 = 7)",
    "details": "'{}'::jsonb",
}


def _table_extras(cursor: Any, table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The table's foreign keys and unique constraints ((name, definition)) and its other
    indexes ((name, CREATE INDEX ...)): what is dropped for the bulk load and rebuilt after."""
    cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                   "AND contype IN ('f', 'u')", [table])
    constraints = list(cursor.fetchall())
    cursor.execute("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                   "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary AND NOT EXISTS "
                   "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)", [table])
    return constraints, list(cursor.fetchall())


def seed_samples(n_samples: int) -> None:
    """About n_samples per-item rows spread evenly over every stored result (n_samples / results
    items each), generated by PostgreSQL in chunks of results, with the indexes rebuilt after."""
    from django.db import connection, transaction

    from leaderboard.models import BenchmarkResult, SampleResult

    table = SampleResult._meta.db_table
    n_results = BenchmarkResult.objects.count()
    per_result = max(1, round(n_samples / max(1, n_results)))
    fields = [f for f in SampleResult._meta.concrete_fields if not f.primary_key]
    columns = [f.column for f in fields]
    values, params = [], []
    for f in fields:
        if f.column in _SAMPLE_COLUMNS:
            values.append(_SAMPLE_COLUMNS[f.column])
        else:  # a field added since: its default, as the ORM would write it
            values.append("%s")
            params.append(f.get_db_prep_save(f.get_default(), connection))
    insert = (f'INSERT INTO {table} ({", ".join(chr(34) + c + chr(34) for c in columns)}) '
              f'SELECT {", ".join(values)} FROM leaderboard_benchmarkresult r '
              f'CROSS JOIN generate_series(0, {per_result - 1}) AS i '
              f"CROSS JOIN LATERAL (SELECT abs(hashtext(r.id::text || ':' || i)) AS v) h "
              f"WHERE r.id >= %s AND r.id < %s")
    started = time.monotonic()
    # One transaction (DDL included): an interrupted load leaves the table as it was, indexes and all.
    with transaction.atomic(), connection.cursor() as cursor:
        constraints, indexes = _table_extras(cursor, table)
        for name, _ in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SELECT min(id), max(id) FROM leaderboard_benchmarkresult")
        low, high = cursor.fetchone()
        step = 5000
        for start in range(low, high + 1, step):
            cursor.execute(insert, [*params, start, start + step])
            done = min(high + 1 - low, start + step - low)
            print(f"  samples for {done}/{n_results} results ({time.monotonic() - started:.0f}s)", flush=True)
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            cursor.execute(definition)
    with connection.cursor() as cursor:  # outside the transaction: VACUUM cannot run in one
        cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"  {n_results * per_result} sample rows in {time.monotonic() - started:.0f}s", flush=True)


# Reports as the pipeline writes them (the golden cases' digests: provenance, contamination with
# its held-out figure, endpoint, base, flags, intake), one per model in turn, so model pages
# render their check sections as real ones do.
GOLDEN_REPORTS = REPO_ROOT / "tests" / "golden" / "reports"


def seed_reports() -> int:
    """Give every submission without a report one of the golden reports (in SQL, in turn)."""
    from django.db import connection

    from leaderboard.models import ModelSubmission

    reports = [path.read_text() for path in sorted(GOLDEN_REPORTS.glob("*.json"))]
    table = ModelSubmission._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET report = (%s::jsonb[])[1 + id %% %s] WHERE report IS NULL",
                       [reports, len(reports)])
        updated = cursor.rowcount
        cursor.execute(f"VACUUM ANALYZE {table}")
    return updated


def counts() -> dict[str, int]:
    from django.db import connection

    from leaderboard.models import BenchmarkResult, LeaderboardEntry, ModelSubmission, SampleResult

    with connection.cursor() as cursor:  # an estimate: counting 10 M rows exactly takes seconds
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                       [SampleResult._meta.db_table])
        samples = max(0, cursor.fetchone()[0])
        if samples == 0:
            samples = SampleResult.objects.count()
    return {"models": ModelSubmission.objects.count(), "results": BenchmarkResult.objects.count(),
            "entries": LeaderboardEntry.objects.count(),
            "complete_entries": LeaderboardEntry.objects.filter(complete=True).count(), "samples": samples,
            "reports": ModelSubmission.objects.filter(report__isnull=False).count()}


# --- server and load -------------------------------------------------------------------------------


# What the TLS proxy in front of the site adds (with DEBUG off the site redirects plain HTTP).
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uncached_application() -> Any:
    """The site's WSGI application with Django's DummyCache: no render cache, no cached counts or
    filter menus (gunicorn's app factory for the uncached measurements)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    from django.conf import settings

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    from leaderboard.wsgi import application

    return application


def start_gunicorn(database_url: str, port: int, workers: int, log_path: Path, cached: bool,
                   worker_class: str = "sync") -> subprocess.Popen:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "DEBUG": "0", "SECRET_KEY": "site-load-" + "x" * 40,
                "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING"})
    env.pop("VERITY_TEST_DB_NAME", None)
    env.pop("CACHE_URL", None)  # cached: the production default, the Redis server of REDIS_URL
    app = ["leaderboard.wsgi:application"] if cached else [
        "--pythonpath", str(REPO_ROOT / "performance"), "site_load:uncached_application()"]
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *app, "-b", f"127.0.0.1:{port}",
         "-w", str(workers), "--worker-class", worker_class, *(["--threads", "2"] if worker_class == "gthread" else []),
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
                conn.request("GET", path, headers=PROXY_HEADERS)
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
    cpu_before = time.process_time()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put((latencies, errors[0], time.process_time() - cpu_before))


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
    client_cpu = 0.0
    for _ in procs:
        got, errs, cpu = queue.get(timeout=duration + 120)
        latencies.extend(got)
        errors += errs
        client_cpu += cpu
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
        # The load generator's own CPU per request: it shares the machine's cores with the server.
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, len(latencies)), 1),
    }


def model_paths(n: int = 200, seed_value: int = 1) -> dict[str, list[str]]:
    """Addresses of `n` random listed models: their pages, their sample explorer (the first and a
    later page of all items, the first of the wrong ones) and pairs of them for compare."""
    from leaderboard.models import LeaderboardEntry

    rng = random.Random(seed_value)
    ids = list(LeaderboardEntry.objects.order_by("?").values_list("repo_id", "submission_id", "verdicts")[:n])
    pages = [f"/models/{repo}/" for repo, _, _ in ids]
    samples = [f"/models/{repo}/samples?submission={sid}&benchmark={rng.choice(sorted(measured))}"
               + rng.choice(("&page=1", "&page=3", "&show=wrong")) for repo, sid, measured in ids]
    compare = [f"/compare/?models={ids[i][0]},{ids[(i + 1) % len(ids)][0]}" for i in range(len(ids))]
    return {"model": pages, "samples": samples, "compare": compare}


def scenarios(models: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each scenario's addresses. The leaderboard ones with many distinct query strings miss the
    short render cache even when the cache is on."""
    families = list(FAMILIES)
    return {
        "leaderboard page (default order)": ["/"],
        "leaderboard page (filters, sorts, search, pages)": [
            "/?page=7", "/?sort=-gsm8k", f"/?family={families[2]}&hide_flagged=on", "/?size=3-9B&sort=delta",
            "/?q=model-77", "/?license=mit&page=3", "/?sort=mmlu", "/?page=150",
        ],
        "leaderboard page (800 distinct pages x sorts)": [
            f"/?page={page}&sort={sort}" for page in range(1, 201) for sort in ("-average", "-gsm8k", "delta", "-mmlu")
        ],
        "API /api/leaderboard": ["/api/leaderboard", "/api/leaderboard?page=3", "/api/leaderboard?sort=-mmlu",
                                 f"/api/leaderboard?family={families[1]}"],
        "API /api/leaderboard (800 distinct)": [
            f"/api/leaderboard?page={page}&sort={sort}" for page in range(1, 201)
            for sort in ("-average", "-gsm8k", "delta", "-mmlu")
        ],
        "model page (200 models)": models["model"],
        "model page sample explorer (200 models: pages 1 and 3, wrong items)": models["samples"],
        "compare page (200 pairs)": models["compare"],
    }


def probe(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers=PROXY_HEADERS)
    response = conn.getresponse()
    response.read()
    return response.status


def _process_tree(pid: int) -> set[int]:
    """The process and its descendants (gunicorn's master and workers)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                todo.extend(int(child) for child in children)
        except OSError:
            continue
    return found


def _backend_pids(url: str) -> set[int]:
    """PostgreSQL backends serving the load database (the site keeps its connections: CONN_MAX_AGE)."""
    import psycopg

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (name,)).fetchall()
    return {pid for (pid,) in rows}


def _cpu_seconds(pids: set[int]) -> dict[int, float]:
    """User + system CPU seconds per live process (a local PostgreSQL's backends included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def server_cpu(server: subprocess.Popen, url: str) -> dict[int, float]:
    return _cpu_seconds(_process_tree(server.pid) | _backend_pids(url))


def cpu_per_request(before: dict[int, float], after: dict[int, float], requests: int) -> dict[str, float]:
    """Server CPU (gunicorn + its PostgreSQL backends) per request, in ms: unlike latency, this
    does not grow when other work shares the machine's cores."""
    used = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
    return {"server_cpu_ms_per_request": round(1000 * used / max(1, requests), 1)}


def run_mode(url: str, args: argparse.Namespace, cached: bool, models: dict[str, list[str]]) -> list[dict]:
    """Every scenario against one gunicorn (cached or not). A scenario whose first address does
    not answer 200 (compare before its view exists) is reported as missing, not measured."""
    port = free_port()
    log_path = REPO_ROOT / "var" / "site_load_gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = start_gunicorn(url, port, args.workers, log_path, cached, args.worker_class)
    rows = []
    try:
        for name, paths in scenarios(models).items():
            if args.only and not any(word in name for word in args.only.split(",")):
                continue
            status = probe(port, paths[0])
            if status != 200:
                row = {"scenario": name, "cache": "on" if cached else "off", "missing": f"{paths[0]} -> {status}"}
            else:
                measure(port, name, paths, args.concurrency, 2.0)  # warm-up: connections, caches, first queries
                before = server_cpu(server, url)
                row = {**measure(port, name, paths, args.concurrency, args.duration), "cache": "on" if cached else "off"}
                row.update(cpu_per_request(before, server_cpu(server, url), row["requests"]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stop(server)
    return rows


def prepare(url: str, args: argparse.Namespace) -> dict[str, int]:
    """The load database at the asked size: reseeded when it has fewer models, sample rows added
    when it has none (or far fewer than asked)."""
    fresh = ensure_database(url, args.reseed)
    setup_django(url)
    create_schema()  # on an existing database: the tables of models added since it was seeded
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
    if args.samples and have["samples"] < 0.9 * args.samples:
        from django.db import connection

        from leaderboard.models import SampleResult

        print(f"adding about {args.samples} sample rows ...", flush=True)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {SampleResult._meta.db_table}")
        seed_samples(args.samples)
        have = counts()
    if have["reports"] < have["models"]:
        print(f"adding reports to {seed_reports()} submissions ...", flush=True)
        have = counts()
    return have


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="verity_load")
    parser.add_argument("--models", type=int, default=N_MODELS)
    parser.add_argument("--samples", type=int, default=10_000_000, help="per-sample rows (0: none)")
    parser.add_argument("--reseed", action="store_true", help="drop and re-create the load database")
    parser.add_argument("--seed-only", action="store_true", help="prepare the database, measure nothing")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes (docker-compose.yml's 3)")
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"),
                        help="sync: docker-compose.yml's (one request per process, FIFO across them); "
                             "gthread: 2 threads each with keep-alive")
    parser.add_argument("--modes", default="uncached,cached", help="uncached, cached or both")
    parser.add_argument("--only", default="", help="comma-separated words: run only scenarios naming one")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    url = load_database_url(base_url, args.database)
    have = prepare(url, args)
    print(f"database {args.database}: {have}", flush=True)
    if args.seed_only:
        return
    models = model_paths()
    report = {"database": args.database, "rows": have, "workers": args.workers, "worker_class": args.worker_class,
              "cpus": os.cpu_count(), "loadavg_before": os.getloadavg(), "results": []}
    for mode in args.modes.split(","):
        report["results"] += run_mode(url, args, mode.strip() == "cached", models)
    report["loadavg_after"] = os.getloadavg()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    print(f"\n{'scenario':62} {'cache':5} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'cpu ms/req':>10} {'client':>6}")
    for row in report["results"]:
        if "missing" in row:
            print(f"{row['scenario'][:62]:62} {row['cache']:5} not measured: {row['missing']}")
        else:
            print(f"{row['scenario'][:62]:62} {row['cache']:5} {row['req_per_s']:7} {row['p50_ms']:7} {row['p95_ms']:7} "
                  f"{row['server_cpu_ms_per_request']:10} {row['client_cpu_ms_per_request']:6}")
    print(f"load average {report['loadavg_before'][0]:.1f} -> {report['loadavg_after'][0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
