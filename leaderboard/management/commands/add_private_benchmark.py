"""python manage.py add_private_benchmark SLUG FILE --format gsm8k|mc [--public SLUG]

Validates a JSONL file, stores it under settings.PRIVATE_BENCHMARKS_DIR (versioned by content
hash, owner-only permissions) and records the version in the PrivateBenchmark table. Messages
name line numbers and fields only: an item's text never reaches the terminal, a log or the DB.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from verification import private_sets


def served_directories() -> list[Path]:
    """Every directory whose files the web tier may serve or render."""
    dirs: list[Path] = []
    for name in ("STATIC_ROOT", "MEDIA_ROOT"):
        value = getattr(settings, name, None)
        if value:
            dirs.append(Path(value))
    dirs.extend(Path(d) for d in getattr(settings, "STATICFILES_DIRS", []) if not isinstance(d, tuple))
    for engine in settings.TEMPLATES:
        dirs.extend(Path(d) for d in engine.get("DIRS", []))
    dirs.append(Path(settings.BASE_DIR) / "leaderboard" / "static")
    dirs.append(Path(settings.BASE_DIR) / "templates")
    return [d.resolve() for d in dirs]


def check_store_location(directory: Path) -> Path:
    resolved = directory.resolve()
    for served in served_directories():
        if resolved == served or served in resolved.parents or resolved in served.parents:
            raise private_sets.PrivateSetError(
                f"PRIVATE_BENCHMARKS_DIR ({resolved}) overlaps a directory the web serves ({served})"
            )
    return resolved


def store_private_benchmark(slug: str, fmt: str, data: bytes, public_counterpart: str | None = None):
    """Store the file and record its version; returns the PrivateBenchmark row."""
    from leaderboard.models import PrivateBenchmark

    if not settings.PRIVATE_BENCHMARKS_DIR:
        raise private_sets.PrivateSetError("settings.PRIVATE_BENCHMARKS_DIR is not set")
    directory = check_store_location(Path(settings.PRIVATE_BENCHMARKS_DIR))
    stored = private_sets.store(slug, fmt, data, directory=directory, public_counterpart=public_counterpart)
    with transaction.atomic():
        row, _ = PrivateBenchmark.objects.update_or_create(
            slug=stored.slug,
            content_hash=stored.content_hash,
            defaults={
                "format": stored.format,
                "version": stored.version,
                "n_items": stored.n_items,
                "path": str(stored.path),
                "public_counterpart": stored.public_counterpart,
            },
        )
    return row


class Command(BaseCommand):
    help = "Add (a new version of) a private held-out benchmark from a JSONL file."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="must start with 'private_' (e.g. private_gsm_2025)")
        parser.add_argument("file", type=Path, help="JSONL file in the declared format")
        parser.add_argument("--format", required=True, choices=private_sets.FORMATS, dest="fmt")
        parser.add_argument("--public", default=None, help="public benchmark it is compared with (default by format)")

    def handle(self, *args, slug: str, file: Path, fmt: str, public: str | None, **options):
        if not file.is_file():
            raise CommandError(f"no such file: {file}")
        try:
            row = store_private_benchmark(slug, fmt, file.read_bytes(), public)
        except private_sets.PrivateSetError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"stored private benchmark {row.slug} version {row.version} ({row.n_items} items, format {row.format})"
        )
