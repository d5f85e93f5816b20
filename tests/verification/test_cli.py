"""The evaluate CLI end to end on the tiny model from the offline HF cache: a real subprocess with
the transformers backend, the vLLM path in-process on the session's one engine, and bad input
refused with exit status 2 before any model is loaded."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from verification import cli

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMIT = 3


def subprocess_env(hf_cache: Path, datasets_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hf_cache), DATASETS_DIR=str(datasets_dir))
    return env


def check_result_file(path: Path, tiny_base, backend_name: str) -> dict:
    data = json.loads(path.read_text())
    assert data["model"]["repo_id"] == tiny_base.repo_id
    assert data["model"]["sha"] == tiny_base.sha
    assert data["backend"]["backend"] == backend_name
    assert data["backend"]["versions"]["torch"] and data["backend"]["versions"]["transformers"]
    assert set(data["results"]) == {"gsm8k", "mmlu"}
    assert data["run_record"]["dataset_hashes"]["gsm8k"].startswith("sha256:")
    assert data["run_record"]["sampling"]["gsm8k"]["temperature"] == 0.0
    assert data["run_record"]["sampling"]["mmlu"] is None  # log-likelihood benchmark
    assert "git_sha" in data["code"]
    assert data["timings"]["total_s"] > 0
    for slug, result in data["results"].items():
        assert result["n"] == LIMIT and len(result["samples"]) == LIMIT
        assert 0.0 <= result["ci_low"] <= result["measured"] <= result["ci_high"] <= 100.0
        assert result["ci_high"] > 0  # a Wilson interval even at 0%
        assert result["n_errors"] == 0, [s["error"] for s in result["samples"]]
        assert result["setup"]["shots"] == 5
        for sample in result["samples"]:
            assert sample["prompt"] and sample["gold"] is not None
    return data


@pytest.fixture(scope="module")
def transformers_run(tiny_base, hf_cache, datasets_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "transformers.json"
    done = subprocess.run(
        [sys.executable, "-m", "verification", "evaluate", tiny_base.repo_id, "--benchmarks", "gsm8k,mmlu",
         "--limit", str(LIMIT), "--backend", "transformers", "--json", str(out)],
        cwd=REPO_ROOT, env=subprocess_env(hf_cache, datasets_dir), capture_output=True, text=True, timeout=300,
    )
    return done, out


def test_evaluate_end_to_end_with_transformers_writes_results_cis_and_samples(transformers_run, tiny_base):
    done, out = transformers_run
    assert done.returncode == 0, done.stderr[-3000:]
    data = check_result_file(out, tiny_base, "transformers")
    assert data["backend"]["dtype"] == "float32"
    # The table on stdout, the progress bar on stderr.
    assert "benchmark" in done.stdout and "gsm8k" in done.stdout and "95% CI" in done.stdout
    assert f"{LIMIT}/{LIMIT}" in done.stderr


def test_evaluate_through_vllm_gives_the_same_per_item_outputs(vllm_tiny, transformers_run, tiny_base, tmp_path):
    out = tmp_path / "vllm.json"
    stdout, stderr = io.StringIO(), io.StringIO()
    factory_calls: list[tuple[str, str, dict]] = []

    def reuse_session_engine(kind: str, model_path: str, **options):
        factory_calls.append((kind, model_path, options))
        return vllm_tiny

    code = cli.main(
        ["evaluate", tiny_base.repo_id, "--benchmarks", "gsm8k,mmlu", "--limit", str(LIMIT), "--backend", "vllm",
         "--json", str(out), "--revision", "main", "--no-progress"],
        backend_factory=reuse_session_engine, stdout=stdout, stderr=stderr,
    )
    assert code == 0, stderr.getvalue()
    # the pinned snapshot, fetched into the model cache like every source the engine measures
    assert factory_calls[0][0] == "vllm" and factory_calls[0][1].endswith(tiny_base.sha)
    assert factory_calls[0][2]["model_sha"] == tiny_base.sha
    from_vllm = check_result_file(out, tiny_base, "vllm")
    from_hf = json.loads(transformers_run[1].read_text())
    for slug in ("gsm8k", "mmlu"):
        assert from_vllm["run_record"]["dataset_hashes"][slug] == from_hf["run_record"]["dataset_hashes"][slug]
        for a, b in zip(from_vllm["results"][slug]["samples"], from_hf["results"][slug]["samples"]):
            assert a["prompt"] == b["prompt"]
            assert a["output"] == b["output"]
            assert a["extracted"] == b["extracted"] and a["correct"] == b["correct"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--benchmarks", "gsm8k,nope"], "unknown benchmark 'nope'"),
        (["--benchmarks", "gsm8k", "--limit", "0"], "--limit must be at least 1"),
        (["--benchmarks", "mmlu", "--cot"], "chain-of-thought is not supported"),
        (["--benchmarks", "gsm8k", "--shots", "40"], "supports 0..8 shots"),
        (["--benchmarks", "gsm8k", "--backend", "tgi"], "unknown backend 'tgi'"),
        (["--benchmarks", " , "], "--benchmarks is empty"),
        (["--benchmarks", "gsm8k", "--datasets-dir", "/nonexistent/data"], "does not exist"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(argv, message, tiny_base, tmp_path):
    stderr = io.StringIO()

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded for bad input")

    code = cli.main(["evaluate", tiny_base.repo_id, "--json", str(tmp_path / "o.json"), *argv],
                    backend_factory=must_not_load, stdout=io.StringIO(), stderr=stderr)
    assert code == cli.EXIT_BAD_INPUT
    assert message in stderr.getvalue()
    assert not (tmp_path / "o.json").exists()


def test_bad_source_or_output_exit_2(tiny_base, hf_cache, tmp_path):
    cases = [
        (["verity-test/not-cached", "--json", str(tmp_path / "o.json")], "not in the local Hugging Face cache"),
        ([tiny_base.repo_id, "--revision", "v9", "--json", str(tmp_path / "o.json")], "revision 'v9'"),
        (["not a repo", "--json", str(tmp_path / "o.json")], "malformed Hugging Face repo id"),
        ([tiny_base.repo_id, "--json", str(tmp_path / "missing-dir" / "o.json")], "does not exist"),
        ([tiny_base.repo_id, "--json", str(tmp_path)], "is a directory"),
    ]
    for argv, message in cases:
        stderr = io.StringIO()
        code = cli.main(["evaluate", *argv, "--benchmarks", "gsm8k"], stdout=io.StringIO(), stderr=stderr,
                        backend_factory=lambda *a, **k: pytest.fail("model loaded for bad input"))
        assert code == cli.EXIT_BAD_INPUT, argv
        assert message in stderr.getvalue(), (argv, stderr.getvalue())


def test_missing_required_argument_is_exit_2(capsys):
    assert cli.main(["evaluate", "org/name"]) == cli.EXIT_BAD_INPUT
    assert "--benchmarks" in capsys.readouterr().err


def test_manage_py_evaluate_is_the_same_cli(hf_cache, datasets_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate", "verity-test/not-cached", "--benchmarks", "gsm8k",
         "--json", str(tmp_path / "o.json")],
        cwd=REPO_ROOT, env=subprocess_env(hf_cache, datasets_dir), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == cli.EXIT_BAD_INPUT, done.stderr[-2000:]
    assert "not in the local Hugging Face cache" in done.stderr


def test_result_table_marks_invalid_runs():
    result = {"setup": {"shots": 5, "cot": True}, "n": 10, "measured": 0.0, "ci_low": 0.0, "ci_high": 27.8,
              "n_errors": 2, "n_unparsed": 1, "invalid": True}
    table = cli.result_table({"gsm8k": result})
    assert "5-shot cot" in table and "[0.0, 27.8]" in table and "no (error rate > 1%)" in table
