"""The endpoint check's probe prompts: drawn fresh for every check, so an endpoint cannot tell a
probe from a user's request.

A fixed list of prompts in public source lets a Reflection-style wrapper serve the submitted
weights to exactly those prompts and another model to everyone else. So no probe is written in
this code base. Each check draws its prompts, with a secret random seed (`new_seed`), from a
pool of ordinary-looking requests:

- the maintainers' private prompts: `<PRIVATE_BENCHMARKS_DIR>/endpoint_prompts.jsonl`, one
  `{"prompt": "..."}` per line (never shown on a page: examples from them are withheld); they
  make up up to PRIVATE_SHARE of every draw, so a wrapper that recognised every public text would
  still be caught on them;
- questions and instructions read in place from the benchmark datasets in DATASETS_DIR (GSM8K
  train and test, MATH, ARC, MMLU, TruthfulQA, IFEval: tens of thousands of texts), a third of them
  cut to a random prefix of their words (composed at random, so a wrapper that looks public texts
  up verbatim misses them).

The seed is recorded in the report's endpoint section once the check is done, so maintainers can
rebuild the exact draw (`draw_probes(n, seed, ...)` with the same pool); nothing sent to the
endpoint is derived from it in a way that can be inverted (`derived_seed`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRIVATE_PROMPTS_FILE = "endpoint_prompts.jsonl"
PRIVATE_SHARE = 0.5  # (ours) at most this share of a draw comes from the private prompts
COMPOSED_SHARE = 1 / 3  # (ours) dataset texts cut to a random prefix of their words
MIN_CHARS, MAX_CHARS = 16, 600  # (ours) short enough for small context windows, long enough to answer
MIN_PREFIX_WORDS = 6
MAX_PRIVATE_BYTES = 20 * 1024 * 1024
PRIVATE = "private"


class ProbePoolError(ValueError):
    """The pool cannot give a draw (no data, a malformed private prompts file). Messages name
    line numbers, never a private prompt's text."""


@dataclass(frozen=True)
class Probe:
    text: str
    source: str  # "private" or the dataset's name
    composed: bool = False

    @property
    def private(self) -> bool:
        return self.source == PRIVATE


def new_seed() -> int:
    """A fresh secret seed for one check (recorded in its report afterwards)."""
    return secrets.randbits(63)


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one use of the check's secret seed (e.g. the sampling seeds sent to the
    endpoint): one-way, so seeing it does not reveal the probe draw."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


# --- the pool ----------------------------------------------------------------------------------


def _keep(text: Any) -> bool:
    return isinstance(text, str) and MIN_CHARS <= len(text.strip()) <= MAX_CHARS


def _jsonl_field(path: Path, field: str) -> list[str]:
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                value = json.loads(line).get(field)
                if _keep(value):
                    out.append(value.strip())
    return out


def _csv_column(paths: list[Path], column: int | str, header: bool) -> list[str]:
    out = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = csv.DictReader(handle) if header else csv.reader(handle)
            for row in rows:
                value = row.get(column) if header else (row[column] if len(row) > int(column) else None)
                if _keep(value):
                    out.append(value.strip())
    return out


@functools.lru_cache(maxsize=4)
def dataset_prompts(datasets_dir: str) -> dict[str, tuple[str, ...]]:
    """{dataset name: texts} from the benchmark files present under `datasets_dir` (read once per
    process). A missing dataset is skipped; the pool is whatever is installed."""
    root = Path(datasets_dir)
    sources = {
        "gsm8k": _jsonl_field(root / "gsm8k" / "train.jsonl", "question")
        + _jsonl_field(root / "gsm8k" / "test.jsonl", "question"),
        "math": _jsonl_field(root / "math" / "test.jsonl", "problem"),
        "arc_challenge": _jsonl_field(root / "arc_challenge" / "test.jsonl", "question"),
        "ifeval": _jsonl_field(root / "ifeval" / "input_data.jsonl", "prompt"),
        "mmlu": _csv_column(sorted((root / "mmlu" / "test").glob("*.csv")), 0, header=False),
        "truthfulqa": _csv_column([p for p in [root / "truthfulqa" / "TruthfulQA.csv"] if p.exists()],
                                  "Question", header=True),
    }
    # One copy of each text (GSM8K questions repeat across files in some mirrors).
    return {name: tuple(dict.fromkeys(texts)) for name, texts in sources.items() if texts}


def load_private_prompts(private_dir: str | Path | None) -> tuple[str, ...]:
    """The maintainers' private prompts; () when no store or no file is configured."""
    if not private_dir:
        return ()
    path = Path(private_dir) / PRIVATE_PROMPTS_FILE
    if not path.exists():
        return ()
    if path.stat().st_size > MAX_PRIVATE_BYTES:
        raise ProbePoolError(f"{PRIVATE_PROMPTS_FILE} is larger than {MAX_PRIVATE_BYTES // (1024 * 1024)} MiB")
    return _parse_private(path.read_bytes())


def _parse_private(data: bytes) -> tuple[str, ...]:
    prompts: list[str] = []
    for number, line in enumerate(data.decode("utf-8", errors="strict").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ProbePoolError(f"{PRIVATE_PROMPTS_FILE} line {number}: not a JSON object") from None
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise ProbePoolError(f"{PRIVATE_PROMPTS_FILE} line {number}: field 'prompt' must be a non-empty string")
        if len(prompt) > MAX_CHARS * 4:
            raise ProbePoolError(f"{PRIVATE_PROMPTS_FILE} line {number}: prompt longer than {MAX_CHARS * 4} characters")
        prompts.append(prompt.strip())
    return tuple(dict.fromkeys(prompts))


# --- one draw ----------------------------------------------------------------------------------


def _composed(text: str, rng: random.Random) -> str | None:
    """A random prefix of the text's words (at least MIN_PREFIX_WORDS, never the whole text)."""
    words = text.split()
    if len(words) <= MIN_PREFIX_WORDS + 1:
        return None
    return " ".join(words[: rng.randint(MIN_PREFIX_WORDS, len(words) - 1)])


def _dataset_probes(sources: dict[str, tuple[str, ...]], n: int, rng: random.Random) -> list[Probe]:
    """n distinct texts, each source weighted by its size (a draw looks like the pool)."""
    names = sorted(sources)
    flat = [(name, i) for name in names for i in range(len(sources[name]))]
    # A few spare picks: a composed prefix may equal another drawn text.
    picked = rng.sample(flat, min(n + 8, len(flat)))
    probes: dict[str, Probe] = {}
    for name, index in picked:
        text = sources[name][index]
        if rng.random() < COMPOSED_SHARE and (cut := _composed(text, rng)) is not None:
            probe = Probe(cut, name, composed=True)
        else:
            probe = Probe(text, name)
        probes.setdefault(probe.text, probe)
        if len(probes) == n:
            break
    return list(probes.values())


def draw_probes(
    n: int,
    seed: int,
    *,
    datasets_dir: str | Path | None,
    private_prompts: tuple[str, ...] = (),
) -> list[Probe]:
    """n distinct probes for one check: up to PRIVATE_SHARE private ones, the rest from the
    datasets, in random order. The same (n, seed, pool) always gives the same draw."""
    if n <= 0:
        return []
    rng = random.Random(seed)
    n_private = min(len(private_prompts), int(n * PRIVATE_SHARE))
    probes = [Probe(text, PRIVATE) for text in rng.sample(list(private_prompts), n_private)]
    sources = dataset_prompts(str(datasets_dir)) if datasets_dir else {}
    probes += _dataset_probes(sources, n - n_private, rng)
    if len(private_prompts) > n_private and len(probes) < n:  # a small installation: more private ones
        rest = [p for p in private_prompts if p not in {q.text for q in probes}]
        probes += [Probe(text, PRIVATE) for text in rng.sample(rest, min(n - len(probes), len(rest)))]
    if not probes:
        raise ProbePoolError("no probe prompts: neither datasets (DATASETS_DIR) nor private prompts are available")
    unique = list({p.text: p for p in probes}.values())[:n]  # a private text may also be a public one
    rng.shuffle(unique)
    return unique


def describe_draw(probes: list[Probe], seed: int, datasets_dir: str | Path | None, n_private_pool: int) -> dict[str, Any]:
    """What the report records about a draw: enough to rebuild it, no private text."""
    sources = dataset_prompts(str(datasets_dir)) if datasets_dir else {}
    by_source: dict[str, int] = {}
    for probe in probes:
        by_source[probe.source] = by_source.get(probe.source, 0) + 1
    return {
        "seed": seed,
        "n_drawn": len(probes),
        "n_private": sum(p.private for p in probes),
        "n_composed": sum(p.composed for p in probes),
        "by_source": dict(sorted(by_source.items())),
        "pool": {"private": n_private_pool, **{name: len(texts) for name, texts in sorted(sources.items())}},
        "how": "verification.endpoint.probes.draw_probes(n, seed, datasets_dir=DATASETS_DIR, "
               "private_prompts=<PRIVATE_BENCHMARKS_DIR>/endpoint_prompts.jsonl)",
    }
