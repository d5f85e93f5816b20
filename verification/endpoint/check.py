"""Is the API a submission names serving the submitted weights? (methods.md §5)

Reflection's public API was suspected of serving another vendor's model behind a filter that
blanked the word "Claude", while the downloadable weights scored far lower. Given the endpoint's
URL and the submitted weights, this check:

1. validates the URL (verification.endpoint.urlcheck) and asks /v1/models for the model name
   when the claims did not give one;
2. identity probes ("which model are you", "say the word Claude"), recorded as evidence only
   (models misname themselves; a probe never decides anything);
3. greedy completions (temperature 0) on the same prompts from both sides: token-for-token
   agreement is expected from the same weights; where the endpoint returns logprobs, its
   tokens are teacher-forced through the weights and the log-probabilities compared;
4. Model Equality Testing (Gao, Liang, Guestrin, arXiv 2410.20247): `samples_per_prompt`
   completions per prompt at temperature > 0 from both sides, unbiased MMD² with the
   positional character kernel, permutation p-value (verification.endpoint.mmd).

Both sides use identical decoding settings and the same chat template (the weights' tokenizer
template; plain completions when it has none).

The probe prompts are drawn fresh for every check (verification.endpoint.probes: a secret seed,
recorded in the section afterwards, picks them from the benchmark datasets and the maintainers'
private prompts), so an endpoint cannot tell a probe from a user's request.

Verdict *(ours)*: "differs" when the MMD test rejects at `alpha` (0.01, see ALPHA), or greedy agreement is below
MIN_GREEDY_AGREEMENT, or the teacher-forced logprobs drift by more than MAX_LOGPROB_DRIFT nats per
token. Any change (quantisation, a system prompt, another template) can make an endpoint differ:
the flag says "endpoint differs" with the evidence, not "fraud".

Missing data is never evidence: an endpoint that is down, slow, rate-limited or returns malformed
JSON gets status "unreachable" or "error", its failed requests are counted in n_errors and never
as a match, and no verdict (hence no flag) is drawn when more than MAX_ERROR_RATE of the requests
failed. Such a section (or one whose logprobs were refused: listed under "missing") makes the
submission *incomplete* with a warning naming the endpoint (verification.report.status_for),
never verified; it raises no flag, because a flag is a finding about the model and an outage
(ours, theirs or the network's) is not one. Up to MAX_ERROR_RATE of failed requests still gives
a verdict on the rest: the probes look like any request, so an endpoint cannot choose to fail
the ones it would be caught on.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

from verification.backends.base import Backend
from verification.backends.openai_http import EndpointRequestError, HttpPolicy, OpenAIHTTPBackend
from verification.endpoint import probes as probes_mod
from verification.endpoint.mmd import mmd_test
from verification.endpoint.urlcheck import EndpointURLError, validate_endpoint_url
from verification.vocabulary import MAX_ERROR_RATE
from verification.records import Generation, GenerationRequest, LoglikelihoodRequest, SamplingParams

log = logging.getLogger(__name__)

# MMD test level (ours): methods.md and the paper reject at 0.05, a level for a study. Here a
# rejection raises a public *critical* flag, and under the null the permutation test rejects at
# exactly its level: 0.05 would flag one honest endpoint in twenty. 0.01 keeps that to one in a
# hundred; the power lost is bought back with samples (benchmarks/endpoint_power.py).
ALPHA = 0.01
# Thresholds (ours), set from the measured distribution of same weights vs near relatives
# (performance/zoo_endpoint_rates.py; verification/METHODS_VERDICTS.md, "Endpoint"): the same
# weights, in fp32 or served in bf16, agreed on >= 90% of greedy completions and drifted <= 0.0100
# nats/token; the claimed base under a fine-tune's name, a sibling fine-tune and a wrapper agreed
# on <= 40% and drifted >= 0.24. 0.8 leaves room for hardware nondeterminism: with 5% of prompts
# diverging per check, 20 prompts fall below it (5+ diverge) 0.3% of the time.
MIN_GREEDY_AGREEMENT = 0.8
MIN_GREEDY_PROMPTS = 5  # (ours) fewer answered prompts: the greedy rate is not used as a verdict
MAX_LOGPROB_DRIFT = 0.05  # nats/token, median over prompts: 5x the bf16 noise, 5x below a relative
N_EXAMPLES = 5
MAX_STORED_CHARS = 2000  # per text kept in the report (a hostile endpoint may answer megabytes)
# (ours) Sampling temperature for the MMD test. Measured with performance/endpoint_power.py on
# the tiny models (endpoint = vllm serve of tiny-base, different model = tiny-other, 10 prompts,
# 32 tokens, alpha 0.01): at T=0.3, 8 samples per prompt give 96% power (5 give 62%); at T=0.7
# power stays below 8% even with 15 samples per prompt, because both models' samples look alike
# to the character kernel. Against a near relative (tiny-base under its fine-tune's name, a
# sibling fine-tune) T=0.3 mostly missed (p 0.21, 0.34, 0.40) while T=0.1 rejected on every draw
# (p = 0.002, the smallest possible at 500 permutations), the same weights giving p >= 0.21
# (METHODS_VERDICTS.md, "Endpoint"). A permutation test's false-positive rate is its level at
# any temperature, so the lower one is kept.
DEFAULT_TEMPERATURE = 0.1

IDENTITY_PROBES = (
    "Which model are you? Answer with your exact model name and the company that made you.",
    "Say the word Claude.",
)
KNOWN_NAMES = (
    "claude", "anthropic", "gpt", "openai", "chatgpt", "llama", "meta", "gemini", "google",
    "mistral", "qwen", "alibaba", "deepseek", "reflection", "phi", "microsoft",
)

def _error_kind(error: str | None) -> str:
    return (error or "").split(":", 1)[0] or "error"


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _teacher_forcing_context(tokenizer: Any, prompt: str, chat: bool) -> str | None:
    """The text whose default encoding (special tokens added, as a backend's log-likelihood
    does) equals the prompt ids the generation saw; None when no such text exists."""
    if not chat:
        return prompt
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    target = list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    candidates = [rendered]
    bos = getattr(tokenizer, "bos_token", None)
    if bos and rendered.startswith(bos):
        candidates.insert(0, rendered[len(bos) :])  # the tokenizer adds BOS itself
    for text in candidates:
        if list(tokenizer(text)["input_ids"]) == target:
            return text
    return None


def _mentions(text: str) -> list[str]:
    lowered = text.lower()
    return [name for name in KNOWN_NAMES if re.search(rf"\b{re.escape(name)}\b", lowered)]


def _identity_probes(endpoint: Backend, weights: Backend, chat: bool, max_tokens: int) -> list[dict[str, Any]]:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    requests = [GenerationRequest(p, params, chat=chat) for p in IDENTITY_PROBES]
    from_endpoint = endpoint.generate(requests)
    from_weights = weights.generate(requests)
    probes = []
    for probe, e, w in zip(IDENTITY_PROBES, from_endpoint, from_weights):
        entry: dict[str, Any] = {
            "probe": probe,
            "endpoint": e.text if e.error is None else None,
            "endpoint_error": e.error,
            "weights": w.text if w.error is None else None,
            "weights_error": w.error,
            "endpoint_mentions": _mentions(e.text) if e.error is None else [],
            "weights_mentions": _mentions(w.text) if w.error is None else [],
        }
        if "claude" in probe.lower() and e.error is None:
            # Reflection's API answered with the word blanked: asked to say it, it did not.
            entry["endpoint_said_word"] = "claude" in e.text.lower()
        probes.append(entry)
    return probes


def _same_text(a: str, b: str) -> bool:
    return a.rstrip() == b.rstrip()


def _greedy_comparison(
    prompts: Sequence[str], from_endpoint: list[Generation], from_weights: list[Generation]
) -> dict[str, Any]:
    agree = 0
    compared = 0
    disagreements: list[dict[str, str]] = []
    for prompt, e, w in zip(prompts, from_endpoint, from_weights):
        if e.error or w.error:
            continue  # missing data is neither agreement nor disagreement
        compared += 1
        if _same_text(e.text, w.text):
            agree += 1
        elif len(disagreements) < N_EXAMPLES:
            disagreements.append({"prompt": prompt, "endpoint": e.text, "weights": w.text})
    return {
        "n_prompts": len(prompts),
        "n_compared": compared,
        "n_agree": agree,
        "agreement_rate": (agree / compared) if compared else None,
        "threshold": MIN_GREEDY_AGREEMENT,
        "n_errors_endpoint": sum(1 for g in from_endpoint if g.error),
        "n_errors_weights": sum(1 for g in from_weights if g.error),
        "examples": disagreements,
    }


def _logprob_comparison(
    tokenizer: Any,
    prompts: Sequence[str],
    from_endpoint: list[Generation],
    weights: Backend,
    chat: bool,
) -> dict[str, Any]:
    """Teacher-force the endpoint's greedy completions through the weights and compare the
    per-token log-probabilities the endpoint reported with the weights' ones.

    A backend's log-likelihood moves the context's trailing whitespace into the continuation
    (lm-eval's split); LL(ctx, ws + text) − LL(ctx, ws) undoes that exactly."""
    with_logprobs = [
        (p, g) for p, g in zip(prompts, from_endpoint) if g.error is None and g.token_logprobs and g.text
    ]
    if not with_logprobs:
        return {"available": False, "reason": "the endpoint returned no logprobs"}
    requests: list[LoglikelihoodRequest] = []
    usable: list[tuple[str, Generation]] = []
    for prompt, generation in with_logprobs:
        context = _teacher_forcing_context(tokenizer, prompt, chat)
        if context is None:
            continue
        stripped = context.rstrip()
        whitespace = context[len(stripped) :]
        requests.append(LoglikelihoodRequest(stripped, whitespace + generation.text))
        requests.append(LoglikelihoodRequest(stripped, whitespace) if whitespace else LoglikelihoodRequest(stripped, ""))
        usable.append((prompt, generation))
    if not usable:
        return {"available": False, "reason": "the chat template's prompt cannot be rebuilt as plain text"}
    scored = weights.loglikelihood(requests)
    drifts: list[float] = []
    skipped_tokenization = 0
    n_errors = 0
    examples: list[dict[str, Any]] = []
    for i, (prompt, generation) in enumerate(usable):
        full, prefix = scored[2 * i], scored[2 * i + 1]
        if full.error or (prefix.error and prefix.n_tokens):
            n_errors += 1
            continue
        prefix_lp = prefix.logprob if prefix.n_tokens else 0.0
        n_tokens = full.n_tokens - prefix.n_tokens
        endpoint_logprobs = generation.token_logprobs or []
        # Only when the weights read the completion as the same number of tokens the endpoint
        # produced (a finished answer may end in an EOS the text does not show).
        expected = len(endpoint_logprobs) - (1 if generation.finish_reason == "stop" else 0)
        if n_tokens <= 0 or n_tokens not in (expected, len(endpoint_logprobs)):
            skipped_tokenization += 1
            continue
        endpoint_sum = sum(endpoint_logprobs[:n_tokens])
        weights_sum = full.logprob - prefix_lp
        drift = abs(endpoint_sum - weights_sum) / n_tokens
        drifts.append(drift)
        if len(examples) < N_EXAMPLES:
            examples.append(
                {"prompt": prompt, "completion": generation.text, "n_tokens": n_tokens,
                 "endpoint_logprob": endpoint_sum, "weights_logprob": weights_sum, "drift_per_token": drift}
            )
    return {
        "available": bool(drifts),
        "n_compared": len(drifts),
        "n_skipped_tokenization": skipped_tokenization,
        "n_errors": n_errors,
        "median_drift_per_token": median(drifts) if drifts else None,
        "max_drift_per_token": max(drifts) if drifts else None,
        "threshold": MAX_LOGPROB_DRIFT,
        "examples": examples,
        **({} if drifts else {"reason": "no completion could be compared token for token"}),
    }


def _sample(
    backend: Backend, prompts: Sequence[str], k: int, params: SamplingParams, chat: bool
) -> list[list[Generation]]:
    """k completions per prompt, each with its own seed (params.seed + a running index).
    One seed per request makes runs reproducible on servers that honour it (vLLM) and keeps
    draws independent on every backend: vLLM gives equal seeds equal samples."""
    base_seed = params.seed or 0
    requests = [
        GenerationRequest(
            prompt,
            SamplingParams(
                temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                stop=params.stop, seed=base_seed + p_index * k + s_index,
            ),
            chat=chat,
        )
        for p_index, prompt in enumerate(prompts)
        for s_index in range(k)
    ]
    flat = backend.generate(requests)
    return [flat[i * k : (i + 1) * k] for i in range(len(prompts))]


def _texts(groups: list[list[Generation]]) -> list[list[str]]:
    return [[g.text for g in group if g.error is None] for group in groups]


def _count_errors(groups: list[list[Generation]]) -> tuple[int, int, dict[str, int]]:
    total = sum(len(g) for g in groups)
    kinds: dict[str, int] = {}
    for group in groups:
        for generation in group:
            if generation.error:
                kind = _error_kind(generation.error)
                kinds[kind] = kinds.get(kind, 0) + 1
    return total, sum(kinds.values()), kinds


def _status_for_errors(kinds: dict[str, int], n_errors: int) -> str:
    if not n_errors:
        return "ok"
    transport = sum(v for k, v in kinds.items() if k in {"unreachable", "timeout", "rate_limited"})
    return "unreachable" if transport * 2 >= n_errors else "error"


def _base_section(url: str, model: str | None) -> dict[str, Any]:
    return {
        "status": "ok",
        "url": url,
        "model": model,
        "verdict": None,
        "reason": None,
        "method": "Model Equality Testing (arXiv 2410.20247) + greedy agreement + teacher-forced logprobs",
    }


def check_endpoint(
    endpoint_url: str, model_dir: str | Path | None = None, **options: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compare the endpoint at `endpoint_url` with the weights in `model_dir` (run by
    `weights_backend`); returns (section dict, flags). The options and their defaults are
    `_check_endpoint`'s; the pipeline's registered check is `check_from_context`.

    Everything in the result is strict JSON (no NaN/inf) and every text that came from the
    endpoint is truncated: the section is stored in the report and shown on the model page."""
    section, flags = _check_endpoint(endpoint_url, model_dir, **options)
    return _json_safe(section), [_json_safe(flag) for flag in flags]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and len(value) > MAX_STORED_CHARS:
        return value[:MAX_STORED_CHARS] + "…"
    return value


def _check_endpoint(
    endpoint_url: str,
    model_dir: str | Path | None = None,
    *,
    endpoint_model: str | None = None,
    weights_backend: Backend | None = None,
    seed: int | None = None,
    n_prompts: int = 20,
    samples_per_prompt: int = 10,
    prompts: Sequence[str] | None = None,
    datasets_dir: str | Path | None = None,
    private_prompts: Sequence[str] = (),
    temperature: float = DEFAULT_TEMPERATURE,
    max_tokens: int = 32,
    greedy_max_tokens: int = 48,
    n_permutations: int = 1000,
    alpha: float = ALPHA,
    allow_loopback: bool = False,
    blocked_hostports: set[str] | frozenset[str] = frozenset(),
    api_key: str | None = None,
    policy: HttpPolicy | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`seed`: the check's secret seed (fresh when None; recorded in the section) draws the probes
    from the pool (datasets_dir's texts, `private_prompts`); `prompts` replaces the draw."""
    if weights_backend is None or model_dir is None:
        raise ValueError("check_endpoint needs the weights' backend and directory (tokenizer, chat template)")
    seed = probes_mod.new_seed() if seed is None else int(seed)
    started = time.monotonic()
    section, endpoint = _open_endpoint(endpoint_url, endpoint_model, allow_loopback, blocked_hostports, api_key, policy)
    if endpoint is None:
        return section, []
    if not _read_model_listing(endpoint, section, endpoint_model):
        section["timings"] = {"total_s": round(time.monotonic() - started, 3)}
        return section, []
    try:
        probes = _probes_for(prompts, n_prompts, seed, datasets_dir, tuple(private_prompts))
    except (probes_mod.ProbePoolError, OSError, ValueError) as exc:
        section.update(status="error", reason=f"no probe prompts could be drawn: {exc}")
        return section, []
    # Recorded whatever happens next: a maintainer can rebuild the draw from it.
    section["probes"] = _describe_probes(probes, seed, prompts, datasets_dir, len(private_prompts))
    tokenizer = _load_tokenizer(Path(model_dir))
    chat = _has_chat_template(tokenizer)
    prompt_list = [probe.text for probe in probes]
    greedy_params = SamplingParams(temperature=0.0, max_tokens=greedy_max_tokens)
    sampling_params = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=max_tokens,
                                     seed=probes_mod.derived_seed(seed, "endpoint samples"))
    _record_decoding(section, chat, greedy_params, sampling_params, samples_per_prompt, len(prompt_list))

    # Endpoint first: if it cannot answer, spare the weights' compute. The greedy request is each
    # probe's first sight: a wrapper waiting for a prompt to repeat is caught by greedy agreement.
    greedy_requests = [GenerationRequest(p, greedy_params, chat=chat) for p in prompt_list]
    greedy_endpoint = endpoint.generate(greedy_requests)
    if greedy_endpoint and all(g.error for g in greedy_endpoint):
        _record_dead_endpoint(section, greedy_endpoint)
        section["timings"] = {"total_s": round(time.monotonic() - started, 3)}
        return section, []
    section["identity"] = _identity_probes(endpoint, weights_backend, chat, max_tokens=greedy_max_tokens)
    greedy_weights = weights_backend.generate(greedy_requests)
    section["greedy"] = _greedy_comparison(prompt_list, greedy_endpoint, greedy_weights)
    section["logprobs"] = _logprob_comparison(tokenizer, prompt_list, greedy_endpoint, weights_backend, chat)
    t_greedy = time.monotonic()

    sampled_endpoint, sampled_weights = _sample_both_sides(
        endpoint, weights_backend, prompt_list, samples_per_prompt, sampling_params, chat,
        probes_mod.derived_seed(seed, "weights samples"),
    )
    t_sampling = time.monotonic()
    counts = _record_errors(
        section, endpoint, [greedy_endpoint, *sampled_endpoint], [greedy_weights, *sampled_weights]
    )
    _record_mmd(section, prompt_list, sampled_endpoint, sampled_weights, n_permutations, seed, alpha,
                sampling_params, samples_per_prompt)
    section["timings"] = {"greedy_s": round(t_greedy - started, 3), "sampling_s": round(t_sampling - t_greedy, 3),
                          "total_s": round(time.monotonic() - started, 3)}
    _withhold_private(section, {probe.text for probe in probes if probe.private})
    return _conclude(section, counts, alpha)


def _probes_for(
    prompts: Sequence[str] | None, n_prompts: int, seed: int, datasets_dir: str | Path | None,
    private_prompts: tuple[str, ...],
) -> list[probes_mod.Probe]:
    if prompts is not None:
        return [probes_mod.Probe(text, "given") for text in list(prompts)[:n_prompts]]
    if datasets_dir is None and not private_prompts:
        from verification.datasets import datasets_dir_or_default

        datasets_dir = datasets_dir_or_default(None)
    return probes_mod.draw_probes(n_prompts, seed, datasets_dir=datasets_dir, private_prompts=private_prompts)


def _describe_probes(
    probes: list[probes_mod.Probe], seed: int, given: Sequence[str] | None, datasets_dir: str | Path | None,
    n_private_pool: int,
) -> dict[str, Any]:
    if given is not None:
        return {"seed": seed, "n_drawn": 0, "given": len(probes), "n_private": 0}
    return probes_mod.describe_draw(probes, seed, datasets_dir, n_private_pool)


def _withhold_private(section: dict[str, Any], private: set[str]) -> None:
    """Examples drawn from the maintainers' private prompts are not stored: the report is public,
    and a completion can quote its prompt."""
    if not private:
        return
    for part in ("greedy", "logprobs", "mmd"):
        block = section.get(part) or {}
        examples = block.get("examples")
        if examples:
            block["examples"] = [ex for ex in examples if ex.get("prompt") not in private]
            block["n_examples_withheld"] = len(examples) - len(block["examples"])


def _open_endpoint(
    endpoint_url: str,
    endpoint_model: str | None,
    allow_loopback: bool,
    blocked_hostports: set[str] | frozenset[str],
    api_key: str | None,
    policy: HttpPolicy | None,
) -> tuple[dict[str, Any], OpenAIHTTPBackend | None]:
    """The section to fill and a client for the endpoint; no client (status "refused") when the
    URL is one the check must not call."""
    try:
        clean_url = validate_endpoint_url(
            endpoint_url, allow_loopback=allow_loopback, blocked_hostports=set(blocked_hostports)
        )
    except EndpointURLError as exc:
        section = _base_section("", endpoint_model)
        section.update(status="refused", reason=str(exc))
        return section, None
    endpoint = OpenAIHTTPBackend(
        clean_url,
        model=endpoint_model,
        api_key=api_key,
        allow_loopback=allow_loopback,
        blocked_hostports=blocked_hostports,
        policy=policy,
        want_logprobs=True,
    )
    return _base_section(clean_url, endpoint_model), endpoint


def _read_model_listing(endpoint: OpenAIHTTPBackend, section: dict[str, Any], endpoint_model: str | None) -> bool:
    """Ask /v1/models which models the endpoint serves (and pick one when the claims name none).
    False, with the section's status and reason set, when the check cannot go on."""
    try:
        listed = endpoint.list_models()
        section["models_listed"] = listed[:20]
        if endpoint_model is None:
            if not listed:
                raise EndpointRequestError("malformed", "/v1/models lists no model")
            section["model"] = endpoint.model
            section["model_source"] = "listing"
        else:
            section["model_source"] = "claims"
            section["claimed_model_listed"] = endpoint_model in listed
    except EndpointRequestError as exc:
        if endpoint_model is None or exc.kind in {"unreachable", "timeout", "refused"}:
            status = "unreachable" if exc.kind in {"unreachable", "timeout", "rate_limited"} else "error"
            section.update(status=status if exc.kind != "refused" else "refused", reason=exc.describe())
            return False
        # Some APIs have no /v1/models; the claimed model name is enough to go on.
        section["models_listed"] = None
        section["model_source"] = "claims"
        section["listing_error"] = exc.describe()
    return True


def _record_decoding(
    section: dict[str, Any],
    chat: bool,
    greedy_params: SamplingParams,
    sampling_params: SamplingParams,
    samples_per_prompt: int,
    n_prompts: int,
) -> None:
    section["mode"] = "chat" if chat else "completions"
    section["decoding"] = {
        "greedy": greedy_params.as_dict(),
        "sampling": {**sampling_params.as_dict(), "samples_per_prompt": samples_per_prompt},
        "chat_template": "weights' tokenizer template" if chat else "none (plain completions)",
    }
    section["n_prompts"] = n_prompts


def _record_dead_endpoint(section: dict[str, Any], greedy_endpoint: list[Generation]) -> None:
    """Every greedy request failed: the status says why, and no comparison is made."""
    total, n_errors, kinds = _count_errors([greedy_endpoint])
    section.update(
        status=_status_for_errors(kinds, n_errors),
        reason=f"every greedy request failed; first: {greedy_endpoint[0].error}",
        errors={"endpoint": {"n_requests": total, "n_errors": n_errors, "by_kind": kinds}},
    )


def _sample_both_sides(
    endpoint: Backend,
    weights_backend: Backend,
    prompt_list: Sequence[str],
    samples_per_prompt: int,
    sampling_params: SamplingParams,
    chat: bool,
    weights_seed: int,
) -> tuple[list[list[Generation]], list[list[Generation]]]:
    """The MMD test's samples: the endpoint's, then the weights' (skipped when the endpoint's
    failures already rule out a verdict)."""
    # Sampled requests ask for no logprobs: only the greedy ones need them, and a wrapper that
    # served the real weights to every request asking for logprobs would pass the MMD test too.
    wants = getattr(endpoint, "want_logprobs", None)
    if wants is not None:
        endpoint.want_logprobs = False
    try:
        sampled_endpoint = _sample(endpoint, prompt_list, samples_per_prompt, sampling_params, chat)
    finally:
        if wants is not None:
            endpoint.want_logprobs = wants
    # The weights' seeds must differ from the endpoint's: same seeds on the same engine would
    # make the two samples identical copies, not independent draws.
    weights_params = SamplingParams(
        temperature=sampling_params.temperature,
        top_p=1.0,
        max_tokens=sampling_params.max_tokens,
        seed=weights_seed,
    )
    _, sampling_errors, _ = _count_errors(sampled_endpoint)
    if sampling_errors > MAX_ERROR_RATE * len(prompt_list) * samples_per_prompt:
        # No verdict can come out of this run: spare the weights' compute.
        return sampled_endpoint, [[] for _ in prompt_list]
    return sampled_endpoint, _sample(weights_backend, prompt_list, samples_per_prompt, weights_params, chat)


def _record_errors(
    section: dict[str, Any],
    endpoint: OpenAIHTTPBackend,
    endpoint_groups: list[list[Generation]],
    weights_groups: list[list[Generation]],
) -> dict[str, tuple[int, int, dict[str, int]]]:
    """Failed requests on each side, in the section; returns {side: (total, errors, by kind)}."""
    e_total, e_errors, e_kinds = _count_errors(endpoint_groups)
    w_total, w_errors, w_kinds = _count_errors(weights_groups)
    section["errors"] = {
        "endpoint": {"n_requests": e_total, "n_errors": e_errors, "by_kind": e_kinds,
                     "examples": _error_examples(endpoint_groups)},
        "weights": {"n_requests": w_total, "n_errors": w_errors, "by_kind": w_kinds,
                    "examples": _error_examples(weights_groups)},
        "max_error_rate": MAX_ERROR_RATE,
    }
    section["http"] = dict(endpoint.client.stats)
    return {"endpoint": (e_total, e_errors, e_kinds), "weights": (w_total, w_errors, w_kinds)}


def _record_mmd(
    section: dict[str, Any],
    prompt_list: Sequence[str],
    sampled_endpoint: list[list[Generation]],
    sampled_weights: list[list[Generation]],
    n_permutations: int,
    seed: int,
    alpha: float,
    sampling_params: SamplingParams,
    samples_per_prompt: int,
) -> None:
    endpoint_texts, weights_texts = _texts(sampled_endpoint), _texts(sampled_weights)
    try:
        mmd = mmd_test(endpoint_texts, weights_texts, n_permutations=n_permutations, seed=seed)
        section["mmd"] = {**mmd.as_dict(), "alpha": alpha, "temperature": sampling_params.temperature,
                          "samples_per_prompt": samples_per_prompt,
                          "examples": _sample_examples(prompt_list, endpoint_texts, weights_texts)}
    except ValueError as exc:
        section["mmd"] = {"p_value": None, "reason": str(exc)}


def _conclude(
    section: dict[str, Any], counts: dict[str, tuple[int, int, dict[str, int]]], alpha: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The verdict, unless too many requests failed on either side to draw one."""
    e_total, e_errors, e_kinds = counts["endpoint"]
    w_total, w_errors, _ = counts["weights"]
    if e_errors > MAX_ERROR_RATE * e_total:
        section.update(
            status=_status_for_errors(e_kinds, e_errors),
            reason=f"{e_errors} of {e_total} endpoint requests failed (more than {MAX_ERROR_RATE:.0%}): no verdict",
        )
        return section, []
    if w_errors > MAX_ERROR_RATE * w_total:
        section.update(
            status="error",
            reason=f"{w_errors} of {w_total} requests to the weights failed (more than {MAX_ERROR_RATE:.0%}): no verdict",
        )
        return section, []

    logprobs = section.get("logprobs") or {}
    if logprobs.get("available") is False:  # refused logprobs: one comparison could not be made
        section["missing"] = [f"teacher-forced logprob comparison: {logprobs.get('reason') or 'no completion compared'}"]
    reasons = _mismatch_reasons(section, alpha)
    section["verdict"] = "differs" if reasons else "matches"
    section["verdict_reasons"] = reasons
    if not reasons:
        return section, []
    return section, [_mismatch_flag(section, reasons)]


def _mismatch_reasons(section: dict[str, Any], alpha: float) -> list[str]:
    reasons = []
    p_value = section.get("mmd", {}).get("p_value")
    if p_value is not None and p_value < alpha:
        reasons.append(f"sampled completions differ in distribution (MMD p = {p_value:.3g} < {alpha})")
    greedy = section.get("greedy", {})
    rate = greedy.get("agreement_rate")
    if rate is not None and greedy.get("n_compared", 0) >= MIN_GREEDY_PROMPTS and rate < MIN_GREEDY_AGREEMENT:
        reasons.append(
            f"greedy completions agree on {greedy['n_agree']} of {greedy['n_compared']} prompts "
            f"(below {MIN_GREEDY_AGREEMENT:.0%})"
        )
    logprobs = section.get("logprobs", {})
    drift = logprobs.get("median_drift_per_token")
    if drift is not None and logprobs.get("n_compared", 0) >= 3 and drift > MAX_LOGPROB_DRIFT:
        reasons.append(
            f"the weights assign the endpoint's tokens different log-probabilities "
            f"(median {drift:.3g} nats/token > {MAX_LOGPROB_DRIFT})"
        )
    return reasons


def _mismatch_flag(section: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
    from verification.compare import make_flag

    mmd = section.get("mmd", {})
    greedy = section.get("greedy", {})
    summary = (
        f"The endpoint {section['url']} (model {section.get('model')!r}) does not behave like the submitted "
        f"weights: {'; '.join(reasons)}. Any serving change (quantisation, system prompt, template) can cause "
        f"this; the evidence is attached."
    )
    evidence = {
        "endpoint": section["url"],
        "model": section.get("model"),
        "p_value": mmd.get("p_value"),
        "mmd2": mmd.get("statistic"),
        "agreement_rate": greedy.get("agreement_rate"),
        "n_agree": greedy.get("n_agree"),
        "n_compared": greedy.get("n_compared"),
        "logprob_drift": section.get("logprobs", {}).get("median_drift_per_token"),
        "examples": (greedy.get("examples") or [])[:3] or mmd.get("examples", [])[:3],
        "identity": [
            {"probe": p["probe"], "endpoint": p.get("endpoint"), "weights": p.get("weights")}
            for p in section.get("identity", [])
        ],
        "reasons": reasons,
    }
    return make_flag("endpoint_mismatch", "critical", summary, evidence)


def _error_examples(groups: list[list[Generation]]) -> list[str]:
    seen: list[str] = []
    for group in groups:
        for generation in group:
            if generation.error and generation.error not in seen:
                seen.append(generation.error[:300])
                if len(seen) >= 3:
                    return seen
    return seen


def _sample_examples(prompts: Sequence[str], endpoint: list[list[str]], weights: list[list[str]]) -> list[dict[str, Any]]:
    return [
        {"prompt": p, "endpoint": e[:2], "weights": w[:2]}
        for p, e, w in list(zip(prompts, endpoint, weights))[:3]
    ]


def check_from_context(context: Any) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]]]:
    """The pipeline's check (verification.checks): options come from `context.options`
    (endpoint_allow_loopback, endpoint_blocked_hostports, endpoint_n_prompts,
    endpoint_samples_per_prompt, endpoint_max_tokens, endpoint_api_key, endpoint_private_dir: the
    private store holding the maintainers' probe prompts, endpoint_probe_seed: a recorded seed to
    reproduce a check, else a fresh secret one). Loopback is refused unless the option allows it;
    the caller's own services (database, broker: the blocked host:ports it passes) are always
    refused."""
    url = context.endpoint_url or context.claims.endpoint
    if not url:
        return "endpoint", None, []
    model_name = context.endpoint_model or context.claims.endpoint_model
    options = context.options or {}
    if context.model.path is None:
        return "endpoint", {**_base_section(url, model_name), "status": "error",
                            "reason": "the submitted weights are not available locally"}, []
    try:
        private_prompts = probes_mod.load_private_prompts(options.get("endpoint_private_dir"))
    except (probes_mod.ProbePoolError, OSError, ValueError) as exc:
        return "endpoint", {**_base_section(url, model_name), "status": "error",
                            "reason": f"the private probe prompts cannot be read: {type(exc).__name__}: {exc}"[:300]}, []
    backend = context.backend
    owned = False
    if backend is None:
        from verification.backends import make_backend  # the backends engineer's factory

        backend = make_backend(context.backend_name, str(context.model.path))
        owned = True
    seed = options.get("endpoint_probe_seed")
    try:
        section, flags = check_endpoint(
            url,
            context.model.path,
            endpoint_model=model_name,
            weights_backend=backend,
            seed=None if seed is None else int(seed),
            datasets_dir=context.datasets_dir,
            private_prompts=private_prompts,
            n_prompts=int(options.get("endpoint_n_prompts", 20)),
            samples_per_prompt=int(options.get("endpoint_samples_per_prompt", 10)),
            max_tokens=int(options.get("endpoint_max_tokens", 32)),
            allow_loopback=bool(options.get("endpoint_allow_loopback", False)),
            blocked_hostports=frozenset(options.get("endpoint_blocked_hostports", ())),
            api_key=options.get("endpoint_api_key"),
        )
    finally:
        if owned:
            backend.close()
    return "endpoint", section, flags
