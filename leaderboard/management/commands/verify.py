"""`python manage.py verify ...` through Django's command machinery (call_command): a thin
wrapper over `python -m verification verify` (same arguments, output and exit status). From the
shell, manage.py hands engine commands to the engine's CLI before Django is set up."""

from __future__ import annotations

import argparse
import io
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import cli


class Command(BaseCommand):
    help = "Verify a model's claimed benchmark scores and write a verity.report/1 JSON report."
    engine_command = "verify"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cli_args", nargs=argparse.REMAINDER)

    def handle(self, *args, **options) -> None:
        errors = io.StringIO()
        code = cli.main([self.engine_command, *options["cli_args"]], stdout=sys.stdout, stderr=errors)
        self.stderr.write(errors.getvalue(), ending="")
        if code != cli.EXIT_OK:
            message = errors.getvalue().strip() or f"{self.engine_command} exited with status {code}"
            raise CommandError(message, returncode=code)
