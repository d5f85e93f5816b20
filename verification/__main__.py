"""`python -m verification evaluate ...` (see verification/cli.py).

The guard matters: vLLM spawns worker processes that re-import the main module."""

from __future__ import annotations

import sys

from verification.cli import main

if __name__ == "__main__":
    sys.exit(main())
