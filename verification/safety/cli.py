"""`classify-refusals IN.csv --json OUT.json`: label completions with the refusal classifier, so
anyone can audit it from outside.

IN.csv has a header with (at least) the columns id, prompt, completion. OUT.json:
    {"labels": {"<id>": "refusal" | "compliance"}, "refusal_probability": {"<id>": p},
     "classifier": {"version": ..., "agreement": {...held-out agreement with human labels...}},
     "n": N}
Exit status: 0 written; 2 bad input (missing or unreadable file, wrong columns, malformed CSV,
duplicate or empty ids, unwritable output).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from verification.safety.classifier import RefusalClassifier, default_classifier

EXIT_OK = 0
EXIT_BAD_INPUT = 2
REQUIRED_COLUMNS = ("id", "prompt", "completion")


class BadInput(ValueError):
    """The input cannot be labelled; the message says why."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classify-refusals",
                                     description="Label (prompt, completion) pairs as refusal or compliance.")
    parser.add_argument("input", metavar="IN.csv", help="CSV with columns id,prompt,completion")
    parser.add_argument("--json", dest="output", required=True, metavar="OUT.json", help="where to write the labels")
    return parser


def read_pairs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise BadInput(f"input file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, strict=True)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise BadInput(f"{path}: missing column(s) {', '.join(missing)}; "
                               f"need {','.join(REQUIRED_COLUMNS)} (found {','.join(reader.fieldnames or []) or 'none'})")
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not a readable UTF-8 CSV ({exc})") from exc
    return _checked_rows(path, rows)


def _checked_rows(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
            raise BadInput(f"{path}: row {line} does not have the header's number of fields")
        item_id = row["id"].strip()
        if not item_id:
            raise BadInput(f"{path}: row {line} has an empty id")
        if item_id in seen:
            raise BadInput(f"{path}: duplicate id {item_id!r} (row {line})")
        seen.add(item_id)
    return rows


def classify_rows(rows: Sequence[dict[str, str]], classifier: RefusalClassifier) -> dict[str, Any]:
    ids = [row["id"].strip() for row in rows]
    probabilities = classifier.refusal_probability([r["prompt"] for r in rows], [r["completion"] for r in rows])
    return {
        "labels": {i: ("refusal" if p >= 0.5 else "compliance") for i, p in zip(ids, probabilities)},
        "refusal_probability": {i: round(p, 4) for i, p in zip(ids, probabilities)},
        "classifier": classifier.describe(),
        "n": len(ids),
    }


def main(argv: Sequence[str] | None = None, *, classifier: RefusalClassifier | None = None,
         stderr: TextIO | None = None) -> int:
    """Entry point; `argv` excludes the program and sub-command names."""
    stderr = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        rows = read_pairs(Path(args.input))
        document = classify_rows(rows, classifier or default_classifier())
        _write(Path(args.output), document)
    except BadInput as exc:
        print(f"classify-refusals: {exc}", file=stderr)
        return EXIT_BAD_INPUT
    counts = sum(1 for v in document["labels"].values() if v == "refusal")
    print(f"classify-refusals: {document['n']} completions, {counts} refusals -> {args.output}", file=stderr)
    return EXIT_OK


def _write(path: Path, document: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from exc


if __name__ == "__main__":
    sys.exit(main())
