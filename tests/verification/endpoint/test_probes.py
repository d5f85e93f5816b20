"""Probe prompts: drawn fresh for every check from the datasets and the maintainers' private
prompts, reproducible from the seed recorded afterwards, never predictable from what the endpoint
is sent, and private prompts never stored in the public report."""

from __future__ import annotations

import json

import pytest

from tests.verification.endpoint.render import render_endpoint
from tests.verification.endpoint.test_check_faults import FAST, NeverCalledBackend
from verification.endpoint import probes
from verification.endpoint.check import check_endpoint, check_from_context
from verification.endpoint.probes import PRIVATE_PROMPTS_FILE, ProbePoolError, draw_probes

PRIVATE = tuple(f"Maintainer question number {i}: what would you pack for a week of rain?" for i in range(30))


def test_each_check_draws_fresh_probes_and_a_recorded_seed_reproduces_them(datasets_dir):
    seeds = {probes.new_seed() for _ in range(20)}
    assert len(seeds) == 20
    first, second = (draw_probes(20, seed, datasets_dir=datasets_dir) for seed in list(seeds)[:2])
    assert not {p.text for p in first} & {p.text for p in second}
    again = draw_probes(20, list(seeds)[0], datasets_dir=datasets_dir)
    assert [p.text for p in again] == [p.text for p in first]
    assert len(first) == 20 and len({p.text for p in first}) == 20


def test_the_pool_is_large_mixed_and_partly_composed(datasets_dir):
    pool = probes.dataset_prompts(str(datasets_dir))
    assert sum(map(len, pool.values())) > 20_000 and len(pool) >= 5
    drawn = [p for seed in range(30) for p in draw_probes(20, seed, datasets_dir=datasets_dir)]
    assert len({p.source for p in drawn}) >= 5
    composed = [p for p in drawn if p.composed]
    assert 0.2 < len(composed) / len(drawn) < 0.45
    texts = {t for texts in pool.values() for t in texts}
    assert not any(p.text in texts for p in composed)  # a prefix, never a verbatim public text
    assert all(probes.MIN_CHARS <= len(p.text) <= probes.MAX_CHARS for p in drawn)


def test_private_prompts_make_up_half_of_a_draw(datasets_dir):
    drawn = draw_probes(20, 5, datasets_dir=datasets_dir, private_prompts=PRIVATE)
    assert sum(p.private for p in drawn) == 10
    assert [p.private for p in drawn] != sorted(p.private for p in drawn)  # interleaved, not a block
    # Only private prompts (no datasets installed): the whole draw comes from them.
    only = draw_probes(12, 5, datasets_dir=None, private_prompts=PRIVATE)
    assert len(only) == 12 and all(p.private for p in only)
    with pytest.raises(ProbePoolError, match="no probe prompts"):
        draw_probes(5, 1, datasets_dir=None)


def test_private_prompts_file_is_validated_without_quoting_it(tmp_path):
    assert probes.load_private_prompts(None) == () and probes.load_private_prompts(tmp_path) == ()
    path = tmp_path / PRIVATE_PROMPTS_FILE
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in PRIVATE[:3]) + "\n\n")
    assert probes.load_private_prompts(tmp_path) == PRIVATE[:3]
    path.write_text(json.dumps({"prompt": "secret words here"}) + "\n" + "{not json secret}\n")
    with pytest.raises(ProbePoolError, match="line 2") as error:
        probes.load_private_prompts(tmp_path)
    assert "secret" not in str(error.value)
    path.write_text(json.dumps({"question": "secret"}) + "\n")
    with pytest.raises(ProbePoolError, match="line 1: field 'prompt'"):
        probes.load_private_prompts(tmp_path)


def test_what_the_endpoint_is_sent_does_not_reveal_the_seed(fault_server, tiny_base, hf_tiny, datasets_dir):
    """The seeds sent with sampled requests are one-way derivations: an endpoint that saw them
    cannot rebuild the draw. The seed recorded in the section rebuilds exactly the prompts sent."""
    seed = 123_456_789
    before = len(fault_server.bodies)
    section, flags = check_endpoint(fault_server.url("claude"), tiny_base.path, weights_backend=hf_tiny, seed=seed,
                                    datasets_dir=datasets_dir, n_prompts=6, samples_per_prompt=2, n_permutations=50,
                                    allow_loopback=True, policy=FAST)
    sent = [b["body"] for b in fault_server.bodies[before:] if b["path"].endswith("completions")]
    sent_seeds = {b["seed"] for b in sent if "seed" in b}
    assert sent_seeds and seed not in sent_seeds
    assert all(abs(s - seed) > 10**6 for s in sent_seeds)
    asked = {b["messages"][-1]["content"] for b in sent}
    assert {p.text for p in draw_probes(6, section["probes"]["seed"], datasets_dir=datasets_dir)} <= asked
    assert section["probes"]["seed"] == seed and section["verdict"] == "differs" and flags


def test_private_probes_are_used_but_never_stored(fault_server, tiny_base, hf_tiny, datasets_dir, tmp_path):
    (tmp_path / PRIVATE_PROMPTS_FILE).write_text("\n".join(json.dumps({"prompt": p}) for p in PRIVATE))
    before = len(fault_server.bodies)
    context = _context(fault_server.url("claude"), tiny_base.path, hf_tiny, datasets_dir, {
        "endpoint_allow_loopback": True, "endpoint_n_prompts": 8, "endpoint_samples_per_prompt": 2,
        "endpoint_private_dir": str(tmp_path)})
    name, section, flags = check_from_context(context)
    asked = {b["body"]["messages"][-1]["content"] for b in fault_server.bodies[before:] if b["path"].endswith("completions")}
    assert len(asked & set(PRIVATE)) == 4 and section["probes"]["n_private"] == 4
    stored = json.dumps([section, flags])
    assert not any(p in stored for p in PRIVATE)
    assert section["greedy"]["n_examples_withheld"] >= 1 and section["verdict"] == "differs"
    assert section["probes"]["pool"]["private"] == len(PRIVATE)
    html = render_endpoint(section)
    assert "drawn fresh for this check" in html and "4 came from the maintainers' private prompts" in html
    assert not any(p in html for p in PRIVATE)


def test_an_unreadable_private_prompts_file_is_a_check_error_not_a_pass(fault_server, tiny_base, datasets_dir, tmp_path):
    (tmp_path / PRIVATE_PROMPTS_FILE).write_text("{\"prompt\": 5}\n")
    context = _context(fault_server.url("ok"), tiny_base.path, NeverCalledBackend(), datasets_dir, {
        "endpoint_allow_loopback": True, "endpoint_private_dir": str(tmp_path)})
    _, section, flags = check_from_context(context)
    assert section["status"] == "error" and "line 1" in section["reason"] and flags == []


def _context(url, model_dir, backend, datasets_dir, options):
    from verification.checks import CheckContext, ModelRef
    from verification.claims import ClaimsDoc

    return CheckContext(
        model=ModelRef("verity-test/tiny-base", "verity-test/tiny-base", None, model_dir), base=None, candidates=[],
        claims=ClaimsDoc(endpoint=url), intake={}, benchmarks={}, base_benchmarks=None, endpoint_url=None,
        endpoint_model=None, datasets_dir=datasets_dir, backend_name="transformers", backend=backend,
        options=options,
    )
