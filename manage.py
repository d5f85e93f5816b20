#!/usr/bin/env python
"""Django's command-line utility for Verity.

The engine's own commands (`evaluate`, `verify`, `classify-refusals`) need no web settings: they go
straight to `python -m verification`, so they work in a fresh checkout without SECRET_KEY."""
import os
import sys

ENGINE_COMMANDS = ("evaluate", "verify", "classify-refusals")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ENGINE_COMMANDS:
        from verification.cli import main as engine_main

        sys.exit(engine_main(sys.argv[1:]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
