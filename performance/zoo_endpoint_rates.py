"""False-positive and detection rates of the endpoint check on a zoo of tiny endpoints.

Runs the whole check (verification.endpoint.check.check_endpoint: fresh probes from the pool,
greedy agreement, teacher-forced logprob drift, MMD) `--draws` times per case, each with its own
secret seed (so its own probe draw), and reports per case the distribution of the three
statistics and how often each test, and the check, said "differs".

Endpoints: ONE real `vllm serve` of the base (served under the base's and the fine-tune's name),
plus small OpenAI-compatible servers backed by in-process transformers models
(tests/verification/endpoint/model_server.py) for the cases vLLM cannot stage.

    honest (must not be flagged)
      same_weights        vllm serve of B            vs B's weights
      same_weights_bf16   B's weights run in bf16     vs B's weights (a dtype change: honest noise)
    near relatives / gaming (should be flagged)
      base_as_finetune    vllm serve of B under F's name  vs F's weights (F = fine-tune of B)
      sibling_finetune    S (another fine-tune of B)      vs F's weights
      system_prompt       B plus a system turn            vs B's weights
      wrapper             F for prompts matching a string literal of verification/, B otherwise,
                          vs F's weights (the Reflection pattern against a public probe list)

    .venv/bin/python performance/zoo_endpoint_rates.py --base var/test-models/<key>/tiny-base \\
        --finetune var/test-models/provenance-<key>/full-ft --sibling var/test-models/provenance-<key>/lora-merge \\
        --draws 4 --prompts 10 --samples 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.verification.endpoint.model_server import ModelServer, literal_recogniser  # noqa: E402
from verification.backends import make_backend  # noqa: E402
from verification.backends.openai_http import HttpPolicy  # noqa: E402
from verification.endpoint.check import check_endpoint  # noqa: E402
from verification.endpoint.probes import new_seed  # noqa: E402
from verification.endpoint.vllm_server import VLLMServer  # noqa: E402

HONEST = ("same_weights", "same_weights_bf16")
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and politely."


def _hf(path: str, label: str, dtype: str = "float32") -> Any:
    backend = make_backend("transformers", path, dtype=dtype, max_model_len=1024)
    backend.label = label
    return backend


def _servers(args: argparse.Namespace, vllm_url: str) -> tuple[dict[str, tuple[str, str, str]], list[ModelServer], list]:
    """{case: (endpoint url, served name to ask for, submitted weights label)}, servers, backends."""
    from transformers import AutoTokenizer

    base, ft, sib = _hf(args.base, "base"), _hf(args.finetune, "finetune"), _hf(args.sibling, "sibling")
    base16 = _hf(args.base, "base-bf16", dtype="bfloat16")
    recognised = literal_recogniser()
    servers = [
        ModelServer("base-bf16", lambda prompt, body: base16),
        ModelServer("sibling", lambda prompt, body: sib),
        ModelServer("base", lambda prompt, body: base, system_prompt=SYSTEM_PROMPT,
                    tokenizer=AutoTokenizer.from_pretrained(args.base)),
        ModelServer("finetune", lambda prompt, body: ft if recognised(prompt) else base),
    ]
    for server in servers:
        server.start()
    cases = {
        "same_weights": (vllm_url, "base", "base"),
        "same_weights_bf16": (servers[0].url, "base-bf16", "base"),
        "base_as_finetune": (vllm_url, "finetune", "finetune"),
        "sibling_finetune": (servers[1].url, "sibling", "finetune"),
        "system_prompt": (servers[2].url, "base", "base"),
        "wrapper": (servers[3].url, "finetune", "finetune"),
    }
    return cases, servers, [base, ft, sib, base16]


def _one(args, url: str, name: str, weights: Any, weights_dir: str, seed: int) -> dict[str, Any]:
    section, flags = check_endpoint(
        url, weights_dir, endpoint_model=name, weights_backend=weights, seed=seed, n_prompts=args.prompts,
        samples_per_prompt=args.samples, max_tokens=args.max_tokens, greedy_max_tokens=args.greedy_tokens,
        n_permutations=args.permutations, allow_loopback=True, datasets_dir=args.datasets_dir,
        policy=HttpPolicy(concurrency=4),
    )
    reasons = section.get("verdict_reasons") or []
    return {
        "seed": seed, "status": section.get("status"), "verdict": section.get("verdict"),
        "agreement": (section.get("greedy") or {}).get("agreement_rate"),
        "drift": (section.get("logprobs") or {}).get("median_drift_per_token"),
        "mmd_p": (section.get("mmd") or {}).get("p_value"),
        "greedy_flag": any("greedy" in r for r in reasons), "drift_flag": any("log-prob" in r for r in reasons),
        "mmd_flag": any("MMD" in r for r in reasons), "flagged": bool(flags),
    }


def _summary(case: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    def values(key: str) -> list[float]:
        return [r[key] for r in rows if r[key] is not None]

    n = len(rows)
    out: dict[str, Any] = {"case": case, "honest": case in HONEST, "draws": n}
    for key in ("agreement", "drift", "mmd_p"):
        vals = values(key)
        out[key] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)} if vals else None
    for key in ("greedy_flag", "drift_flag", "mmd_flag", "flagged"):
        out[f"{key}_rate"] = sum(r[key] for r in rows) / n if n else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--finetune", required=True, help="a fine-tune of --base (the submitted weights)")
    parser.add_argument("--sibling", required=True, help="another fine-tune of --base")
    parser.add_argument("--datasets-dir", default=None)
    parser.add_argument("--draws", type=int, default=4, help="checks per case, each with a fresh seed")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--greedy-tokens", type=int, default=48)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--cases", default="", help="comma-separated subset")
    parser.add_argument("--out", help="write rows and summaries as JSON here")
    args = parser.parse_args()
    if args.datasets_dir is None:
        from verification.datasets import datasets_dir_or_default

        args.datasets_dir = str(datasets_dir_or_default(None))

    started = time.monotonic()
    vllm = VLLMServer(args.base, served_name="base", extra_names=("finetune",),
                      log_path="/tmp/zoo_endpoint_vllm.log").start()
    print(json.dumps({"vllm_startup_s": round(vllm.startup_s or 0, 1)}), flush=True)
    cases, servers, backends = _servers(args, vllm.url)
    weights = {"base": (backends[0], args.base), "finetune": (backends[1], args.finetune)}
    wanted = [c for c in cases if not args.cases or c in args.cases.split(",")]
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        for case in wanted:
            url, name, submitted = cases[case]
            backend, weights_dir = weights[submitted]
            rows[case] = []
            for _ in range(args.draws):
                row = _one(args, url, name, backend, weights_dir, new_seed())
                rows[case].append(row)
                print(json.dumps({"case": case, **row}), flush=True)
    finally:
        vllm.stop()
        for server in servers:
            server.stop()
        for backend in backends:
            backend.close()
    summaries = [_summary(case, rows[case]) for case in wanted]
    for summary in summaries:
        print(json.dumps(summary), flush=True)
    print(json.dumps({"total_s": round(time.monotonic() - started, 1)}))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows, "summaries": summaries}, indent=2))


if __name__ == "__main__":
    main()
