"""`python manage.py rescore --benchmark X [--dry-run]`: score every stored output of X again with
the benchmark's current extractor and scorer version, without asking any model (the rules are
in leaderboard/services/rescore.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.services import rescore


class Command(BaseCommand):
    help = "Re-score stored per-sample outputs of a benchmark with its current extractor/scorer version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--benchmark", required=True, help="benchmark slug, e.g. gsm8k")
        parser.add_argument("--dry-run", action="store_true", help="compute and report, write nothing")

    def handle(self, *args, **options) -> None:
        slug = options["benchmark"]
        try:
            spec = rescore.check_benchmark(slug)
        except rescore.RescoreError as error:
            raise CommandError(str(error)) from None
        mode = "dry run, nothing written" if options["dry_run"] else "writing new results beside the old"
        self.stdout.write(f"Re-scoring {slug} with v{spec.version} ({mode}).")
        items = rescore.do_rescore_benchmark(
            slug, dry_run=options["dry_run"], spec=spec, progress=lambda item: self.stdout.write(item.line())
        )
        done = [item for item in items if item.outcome is not None]
        flipped = sum(item.outcome.became_correct + item.outcome.became_wrong for item in done)
        self.stdout.write(f"{len(done)} result(s) re-scored, {len(items) - len(done)} skipped, "
                          f"{flipped} item(s) flipped.")
