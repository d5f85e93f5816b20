"""Flood the submission API from many accounts and addresses at once and show the quotas holding:
the global queue budget (estimated GPU-hours in flight), the per-account and the per-address
limits.

    .venv/bin/python performance/submission_flood.py
    .venv/bin/python performance/submission_flood.py --accounts 60 --ips 12 --per-account 6 --threads 12 --budget 3

Each account gets an API token and its own small repositories in a scratch Hugging Face cache
(offline), each holding the account's owner token, so every submission is a valid author
submission and only the quotas can refuse it. Threads post to /api/submissions through Django's
test client (the real view, service and PostgreSQL, one connection per thread), each request
from one of `--ips` client addresses. Nothing is sent to a broker: the queue is what the database
holds in flight. The script uses a database of its own (`verity_flood` on the DATABASE_URL
server, created from the migrations and dropped at the end), so it never touches dev or test data.
Runs in seconds; exits non-zero if the budget was exceeded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

REFUSALS = {
    "queue is full": "queue budget",
    "submissions in the last 24 hours": "per-account limit",
    "came from your address": "per-address limit",
}


def prepare_accounts(hf_cache: Path, work_dir: Path, n_accounts: int, per_account: int) -> list[dict[str, Any]]:
    """Accounts with an API key and `per_account` repositories each (holding their owner token)."""
    from django.contrib.auth import get_user_model

    from leaderboard.models import ApiToken
    from leaderboard.services.ownership import OWNER_TOKEN_FILE, owner_token_for
    from verification import tinymodels as tm

    accounts = []
    for i in range(n_accounts):
        user = get_user_model().objects.create_user(f"flooder-{i}", password=None)
        key = f"vty_flood-{i:04d}-" + hashlib.sha256(str(i).encode()).hexdigest()[:24]
        ApiToken.objects.create(user=user, name="flood", prefix=key[:12], key_hash=hashlib.sha256(key.encode()).hexdigest())
        repos = []
        for j in range(per_account):
            folder = work_dir / f"flood-{i}--model-{j}"
            (folder / ".verity").mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text(json.dumps({"model_type": "llama", "n": [i, j]}))
            (folder / OWNER_TOKEN_FILE).write_text(owner_token_for(user))
            repo_id = f"flood-{i}/model-{j}"
            tm.install_in_hf_cache(folder, hf_cache, repo_id)
            repos.append(repo_id)
        accounts.append({"user": user, "key": key, "repos": repos})
    return accounts


def _refusal(detail: str) -> str:
    return next((label for text, label in REFUSALS.items() if text in detail), f"other: {detail[:80]}")


def flood(accounts: list[dict[str, Any]], n_ips: int, n_threads: int) -> dict[str, Any]:
    """Every account submits each of its repositories, spread over `n_threads` threads and
    `n_ips` client addresses; returns what was accepted and refused, and the budget's state."""
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from leaderboard.services.submissions import gpu_hours_in_flight

    jobs = [(account, repo) for account in accounts for repo in account["repos"]]
    outcomes: Counter[str] = Counter()
    peak = [0.0]
    lock = threading.Lock()

    def work(worker: int) -> None:
        client = Client()
        try:
            for n, (account, repo) in enumerate(jobs[worker::n_threads]):
                address = f"10.77.{(worker + n) % n_ips}.1"
                response = client.post(
                    "/api/submissions", content_type="application/json", REMOTE_ADDR=address,
                    HTTP_AUTHORIZATION=f"Bearer {account['key']}",
                    data={"repo_id": repo, "claims": [{"benchmark": "gsm8k", "score": 50}]},
                )
                label = "accepted" if response.status_code == 201 else _refusal(response.json().get("detail", ""))
                in_flight = gpu_hours_in_flight()
                with lock:
                    outcomes[label] += 1
                    peak[0] = max(peak[0], in_flight)
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {
        "requests": len(jobs), "seconds": round(elapsed, 2), "per_second": round(len(jobs) / elapsed, 1),
        "outcomes": dict(outcomes), "budget_gpu_hours": settings.QUEUE_GPU_HOURS,
        "in_flight_gpu_hours": round(gpu_hours_in_flight(), 4), "peak_in_flight_gpu_hours": round(peak[0], 4),
    }


def _configure(args: argparse.Namespace, scratch: Path) -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # refusals are the point here, not noise
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = str(scratch / "hf-cache")
    os.environ["VERITY_TEST_DB_NAME"] = args.database
    os.environ["VERITY_QUEUE_GPU_HOURS"] = str(args.budget)
    os.environ["SUBMISSIONS_PER_DAY"] = str(args.per_account_limit)
    os.environ["VERITY_SUBMISSIONS_PER_IP_PER_DAY"] = str(args.per_ip_limit)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--ips", type=int, default=8)
    parser.add_argument("--per-account", type=int, default=5, help="submissions each account attempts")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--budget", type=float, default=2.0, help="VERITY_QUEUE_GPU_HOURS for the run")
    parser.add_argument("--per-account-limit", type=int, default=4, help="SUBMISSIONS_PER_DAY for the run")
    parser.add_argument("--per-ip-limit", type=int, default=1000, help="VERITY_SUBMISSIONS_PER_IP_PER_DAY")
    parser.add_argument("--database", default="verity_flood")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="verity-flood-") as scratch_dir:
        scratch = Path(scratch_dir)
        _configure(args, scratch)
        import django

        django.setup()
        from django.db import connection

        from leaderboard.services import submissions

        submissions.send = lambda *task: None  # no broker: nothing consumes this queue
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            accounts = prepare_accounts(scratch / "hf-cache", scratch / "repos", args.accounts, args.per_account)
            summary = flood(accounts, args.ips, args.threads)
        finally:
            connection.creation.destroy_test_db(args.database, verbosity=0)
    print(json.dumps(summary, indent=2))
    held = summary["peak_in_flight_gpu_hours"] <= summary["budget_gpu_hours"] + 1e-9
    print("queue budget held" if held else "QUEUE BUDGET EXCEEDED")
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
