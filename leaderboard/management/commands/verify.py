"""`python manage.py verify SOURCE ...`: the whole verification pipeline in this process.

Exit status: 0 when a report was written (whatever it flags), 2 when the model or the input was
refused (the reason on stderr; nothing measured), 1 on an internal error.
"""

from __future__ import annotations

import json
import sys
import traceback

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import pipeline as vp
from verification.claims import ClaimsDoc, ClaimsError, load_claims_file
from verification.intake import IntakeRefused
from verification.modelcache import ModelCache
from verification.report import write_report

EXIT_REFUSED = 2
EXIT_INTERNAL = 1


class Command(BaseCommand):
    help = "Verify a model's claimed benchmark scores and write a verity.report/1 JSON report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="Hugging Face repo id (org/name) or a local model directory")
        parser.add_argument("--revision", default=None, help="branch, tag or commit sha (hub sources)")
        parser.add_argument("--claims", default=None, help="claims JSON file")
        parser.add_argument("--base", default=None, help="claimed base model (repo id or directory)")
        parser.add_argument(
            "--endpoint", default=None, help="OpenAI-compatible endpoint URL said to serve the model"
        )
        parser.add_argument("--endpoint-model", default=None, help="model name to ask the endpoint for")
        parser.add_argument(
            "--benchmarks", default=None, help="comma-separated benchmark slugs (default: claimed + core)"
        )
        parser.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
        parser.add_argument("--backend", choices=("vllm", "transformers"), default=None)
        parser.add_argument(
            "--candidate", action="append", default=[], help="alternative base for provenance (repeatable)"
        )
        parser.add_argument(
            "--json", dest="json_out", default=None, help="write the report here (default: stdout)"
        )

    def handle(self, *args, **options) -> None:
        try:
            request = self._request(options)
        except (ClaimsError, ValueError) as exc:
            raise CommandError(f"input refused: {exc}", returncode=EXIT_REFUSED) from None
        cache = ModelCache(settings.MODEL_CACHE_DIR, settings.MODEL_CACHE_BYTES)
        try:
            report = vp.verify(request, cache=cache)
        except IntakeRefused as refused:
            raise CommandError(
                f"refused at intake ({refused.code}): {refused.reason}", returncode=EXIT_REFUSED
            ) from None
        except Exception as exc:
            if options.get("traceback"):
                traceback.print_exc()
            raise CommandError(
                f"internal error: {type(exc).__name__}: {exc}", returncode=EXIT_INTERNAL
            ) from None
        if options["json_out"]:
            path = write_report(report, options["json_out"])
            self.stderr.write(f"report written to {path} ({len(report['flags'])} flag(s))")
        else:
            sys.stdout.write(json.dumps(report, indent=2, allow_nan=False) + "\n")

    def _request(self, options: dict) -> vp.VerifyRequest:
        claims = load_claims_file(options["claims"]) if options["claims"] else ClaimsDoc()
        benchmarks = None
        if options["benchmarks"]:
            from verification.claims import known_benchmarks

            benchmarks = [slug.strip().lower() for slug in options["benchmarks"].split(",") if slug.strip()]
            unknown = sorted(set(benchmarks) - set(known_benchmarks()))
            if unknown:
                raise ValueError(
                    f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known_benchmarks())}"
                )
        limit = options["limit"] if options["limit"] is not None else (settings.DEFAULT_EVAL_LIMIT or None)
        if limit is not None and limit < 1:
            raise ValueError("--limit must be a positive number of items")
        return vp.VerifyRequest(
            source=options["source"],
            revision=options["revision"],
            claims=claims,
            base=options["base"],
            endpoint=options["endpoint"],
            endpoint_model=options["endpoint_model"],
            benchmarks=benchmarks,
            limit=limit,
            backend=options["backend"] or settings.INFERENCE_BACKEND,
            candidates=list(options["candidate"]),
            datasets_dir=settings.DATASETS_DIR,
            max_model_bytes=settings.MAX_MODEL_BYTES,
            # The CLI user checks their own server (`vllm serve` on localhost); the web pipeline
            # never gets this allowance.
            check_options={"endpoint_allow_loopback": True},
        )
