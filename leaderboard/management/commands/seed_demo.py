"""`python manage.py seed_demo`: a populated site for a newcomer, measured for real.

Builds three tiny Llama models with verification.tinymodels (cached under var/demo-models/),
installs them in the local Hugging Face cache (HF_HUB_CACHE), submits them with claims (invented for the demo: one
honest, one inflated, one fine-tune with a claimed base) and runs each through the real pipeline
(workers.tasks.verify_submission -> measure_run -> finalize_submission). The tasks run eagerly in
this process, so the demo does not depend on the worker's Hub settings and measures the same way
a worker would. Idempotent: models already published are left alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEMO_USER = "demo"
DEMO_BENCHMARK_LIMIT = 20


@dataclass(frozen=True)
class DemoModel:
    repo_id: str
    seed: int
    steps: int
    text_offset: int
    claims: list[dict[str, Any]]
    base: str = ""
    training: str = "unknown"
    license: str = "apache-2.0"
    extra: dict[str, str] = field(default_factory=dict)


DEMO_MODELS = (
    DemoModel("verity-demo/tiny-honest", seed=0, steps=80, text_offset=0,
              claims=[{"benchmark": "gsm8k", "score": 1.0, "shots": 0}, {"benchmark": "arc_challenge", "score": 25.0}]),
    DemoModel("verity-demo/tiny-inflated", seed=1, steps=40, text_offset=1000, license="mit",
              claims=[{"benchmark": "gsm8k", "score": 92.5, "shots": 0}, {"benchmark": "arc_challenge", "score": 88.0}]),
    DemoModel("verity-demo/tiny-finetune", seed=0, steps=60, text_offset=0, base="verity-demo/tiny-honest",
              training="full", claims=[{"benchmark": "gsm8k", "score": 2.0, "shots": 0},
                                       {"benchmark": "arc_challenge", "score": 27.0}]),
)


def _card(model: DemoModel) -> str:
    index = "\n".join(
        f"  - task: {{type: text-generation}}\n    dataset: {{name: {c['benchmark']}, type: {c['benchmark']}}}\n"
        f"    metrics:\n    - {{type: acc, value: {c['score']}}}"
        for c in model.claims
    )
    return (f"---\nlicense: {model.license}\nmodel-index:\n- name: {model.repo_id.split('/')[1]}\n  results:\n{index}\n---\n"
            f"# {model.repo_id}\n\nA tiny demo model built by `manage.py seed_demo`.\n")


class Command(BaseCommand):
    help = "Build tiny demo models, submit them with claims and verify them through the real pipeline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=DEMO_BENCHMARK_LIMIT, help="items per benchmark")
        parser.add_argument("--backend", default="transformers", choices=("transformers", "vllm"),
                            help="inference backend of the demo runs (default transformers: the models are tiny)")
        parser.add_argument("--checks", default=None,
                            help="checks for the demo runs, e.g. provenance,endpoint (default: VERITY_CHECKS)")

    def handle(self, *args: Any, **options: Any) -> None:
        hf_cache = self._prepare_environment(options)
        from celery import current_app

        import workers.tasks  # noqa: F401  (registers the tasks that run eagerly here)

        # Eager: the same task functions, run here, nothing sent to the broker.
        current_app.conf.task_always_eager = True
        current_app.conf.task_eager_propagates = True
        user = self._demo_user()
        builds = self._build_models()
        for model in DEMO_MODELS:
            self._seed_one(model, builds[model.repo_id], hf_cache, user)
        self.stdout.write(self.style.SUCCESS("demo models ready"))

    def _prepare_environment(self, options: dict[str, Any]) -> Path:
        from verification.sources import hub_cache_dir

        # The cache the worker resolves repos in (same environment under `make run`), so its
        # periodic weights re-check finds the demo repos where they were measured.
        hf_cache = Path(settings.HF_HUB_CACHE or hub_cache_dir())
        hf_cache.mkdir(parents=True, exist_ok=True)
        os.environ["HF_HUB_CACHE"] = str(hf_cache)
        os.environ["HF_HUB_OFFLINE"] = "1"  # the demo models exist only in this cache
        settings.CORE_BENCHMARKS = ()  # claimed benchmarks only: quick
        if options["checks"] is not None:
            settings.CHECKS = tuple(c.strip() for c in options["checks"].split(",") if c.strip() and c != "none")
        settings.DEFAULT_EVAL_LIMIT = options["limit"]
        settings.INFERENCE_BACKEND = options["backend"]
        return hf_cache

    def _demo_user(self):
        user, created = get_user_model().objects.get_or_create(username=DEMO_USER)
        if created:
            user.set_unusable_password()
            user.save()
        return user

    def _build_models(self) -> dict[str, Path]:
        """Train each demo model once; the saved folders are reused by later runs."""
        from verification import tinymodels as tm

        import hashlib

        recipe = hashlib.sha1(f"{tm.spec_fingerprint()}{DEMO_MODELS!r}".encode()).hexdigest()[:12]
        root = Path(settings.VAR_DIR) / "demo-models" / recipe  # a changed recipe retrains
        wanted = {model.repo_id: root / model.repo_id.replace("/", "--") for model in DEMO_MODELS}
        if all((path / "DONE").exists() for path in wanted.values()):
            return wanted
        if settings.DATASETS_DIR is None:
            raise CommandError("DATASETS_DIR is not set: the demo models train on GSM8K train text")
        texts = tm.corpus_texts(settings.DATASETS_DIR, limit=3000)
        tokenizer = tm.build_tokenizer(texts, vocab_size=2048)
        trained: dict[str, Any] = {}
        for model in DEMO_MODELS:
            path = wanted[model.repo_id]
            if (path / "DONE").exists():
                continue
            self.stdout.write(f"training {model.repo_id} ({model.steps} steps)")
            if model.base and model.base in trained:
                import copy

                network = copy.deepcopy(trained[model.base])  # a real fine-tune of its claimed base
            elif model.base:
                from transformers import AutoModelForCausalLM

                network = AutoModelForCausalLM.from_pretrained(wanted[model.base])  # built by an earlier run
            else:
                network = tm.new_model(tokenizer, seed=model.seed)
            corpus = texts[model.text_offset:model.text_offset + 1000]
            tm.train(network, tokenizer, corpus, steps=model.steps, seed=model.seed)
            trained[model.repo_id] = network
            tm.save(network, tokenizer, path, extra_files={"README.md": _card(model)})
            (path / "DONE").write_text("ok")
        return wanted

    def _seed_one(self, model: DemoModel, folder: Path, hf_cache: Path, user: Any) -> None:
        from leaderboard.models import ModelSubmission
        from leaderboard.services.submissions import SubmissionError, do_create_submission
        from verification import tinymodels as tm

        sha = tm.install_in_hf_cache(folder, hf_cache, model.repo_id)
        concluded = (ModelSubmission.Status.VERIFIED, ModelSubmission.Status.FLAGGED, ModelSubmission.Status.INCOMPLETE)
        done = ModelSubmission.objects.filter(repo_id=model.repo_id, pinned_sha=sha, status__in=concluded)
        if done.exists():
            self.stdout.write(f"{model.repo_id}: already published")
            return
        data: dict[str, Any] = {"repo_id": model.repo_id, "revision": "main", "claims": model.claims,
                                "training": model.training}
        if model.base:
            data["base_model"] = model.base
        try:
            submission = do_create_submission(user, data)  # on commit: verify_submission, eagerly
        except SubmissionError as exc:
            if "already waiting" in exc.message:
                self.stdout.write(f"{model.repo_id}: a submission is already in progress")
                return
            raise CommandError(f"{model.repo_id}: {exc.message}") from None
        submission.refresh_from_db()
        self.stdout.write(f"{model.repo_id}: {submission.status}")
