"""`python manage.py evaluate ...` through Django's command machinery (call_command): the same
thin wrapper as `verify`, over `python -m verification evaluate`."""

from __future__ import annotations

from leaderboard.management.commands.verify import Command as EngineCommand


class Command(EngineCommand):
    help = "Evaluate a model on benchmarks and write JSON results (see `python -m verification evaluate -h`)."
    engine_command = "evaluate"
