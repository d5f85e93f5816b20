"""`python manage.py evaluate SOURCE --benchmarks gsm8k,mmlu ...`: a thin wrapper over the
pure-Python CLI in verification/cli.py (same arguments, output and exit status as
`python -m verification evaluate`). Nothing here touches the database."""

from __future__ import annotations

import argparse
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import cli


class Command(BaseCommand):
    help = "Evaluate a model on benchmarks and write JSON results (see `python -m verification evaluate -h`)."

    def run_from_argv(self, argv: list[str]) -> None:
        # Our own parser handles every argument (Django's would reserve -v, --settings, ...).
        sys.exit(cli.main(["evaluate", *argv[2:]]))

    def add_arguments(self, parser: CommandParser) -> None:
        # call_command("evaluate", "org/name", "--benchmarks", "gsm8k", ...) passes the raw list.
        parser.add_argument("cli_args", nargs=argparse.REMAINDER)

    def handle(self, *args, **options) -> None:
        code = cli.main(["evaluate", *options["cli_args"]])
        if code != cli.EXIT_OK:
            raise CommandError(f"evaluate exited with status {code}", returncode=code)
