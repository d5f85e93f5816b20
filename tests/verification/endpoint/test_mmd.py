"""Model Equality Testing statistics on synthetic samples with known answers."""

from __future__ import annotations

import itertools

import numpy as np

from verification.endpoint.mmd import encode, mmd_test, positional_kernel


def _sample(rng: np.random.Generator, alphabet: str, weights: list[float], n: int, length: int) -> list[str]:
    return ["".join(rng.choice(list(alphabet), size=length, p=weights)) for _ in range(n)]


def test_kernel_is_one_on_itself_and_counts_equal_positions():
    codes = encode(["abcd", "abxd", "ab", ""], 4)
    k = positional_kernel(codes, codes)
    assert np.allclose(np.diag(k), 1.0)
    assert np.allclose(k, k.T)
    assert k[0, 1] == 0.75  # one position differs
    assert k[0, 2] == 0.5  # padding never equals a character
    assert k[2, 3] == 0.5  # both padded at the last two positions: equal there


def test_statistic_matches_brute_force_unbiased_mmd():
    endpoint = [["aab", "abb"], ["zz", "zy", "zx"]]
    weights = [["aab", "bbb", "ab"], ["zy"]]
    result = mmd_test(endpoint, weights, n_permutations=10, seed=0)
    length = 3
    xs = [(p, c) for p, group in enumerate(endpoint) for c in group]
    ys = [(p, c) for p, group in enumerate(weights) for c in group]

    def k(a, b):
        if a[0] != b[0]:
            return 0.0
        ca, cb = a[1].ljust(length, "\0"), b[1].ljust(length, "\0")
        return sum(x == y for x, y in zip(ca, cb)) / length

    n, m = len(xs), len(ys)
    xx = sum(k(a, b) for a, b in itertools.permutations(xs, 2)) / (n * (n - 1))
    yy = sum(k(a, b) for a, b in itertools.permutations(ys, 2)) / (m * (m - 1))
    xy = sum(k(a, b) for a in xs for b in ys) / (n * m)
    assert abs(result.statistic - (xx + yy - 2 * xy)) < 1e-12
    assert result.n_endpoint == 5 and result.n_weights == 4 and result.n_prompts == 2


def test_same_distribution_rejects_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    rejections = 0
    trials = 60
    for trial in range(trials):
        endpoint = [_sample(rng, "abc", [0.5, 0.3, 0.2], 8, 12) for _ in range(5)]
        weights = [_sample(rng, "abc", [0.5, 0.3, 0.2], 8, 12) for _ in range(5)]
        result = mmd_test(endpoint, weights, n_permutations=199, seed=trial)
        assert 0 < result.p_value <= 1
        rejections += result.p_value < 0.05
    # Binomial(60, 0.05): P(X > 9) < 0.2%.
    assert rejections <= 9


def test_different_distribution_is_rejected():
    rng = np.random.default_rng(2)
    endpoint = [_sample(rng, "abc", [0.5, 0.3, 0.2], 10, 12) for _ in range(5)]
    weights = [_sample(rng, "abc", [0.2, 0.3, 0.5], 10, 12) for _ in range(5)]
    result = mmd_test(endpoint, weights, n_permutations=499, seed=0)
    assert result.p_value < 0.01
    assert result.statistic > 0


def test_identical_deterministic_outputs_are_not_rejected_and_p_is_never_zero():
    endpoint = [["same answer"] * 4, ["other"] * 4]
    weights = [["same answer"] * 4, ["other"] * 4]
    result = mmd_test(endpoint, weights, n_permutations=99, seed=0)
    assert result.p_value == 1.0
    different = mmd_test(endpoint, [["xxxx answer"] * 4, ["yyyyy"] * 4], n_permutations=99, seed=0)
    assert different.p_value == 1 / 100


def test_every_sample_gets_its_own_seed_and_the_sides_never_share_one():
    """vLLM gives equal seeds equal samples: a shared seed would make k copies of one draw."""
    from verification.backends.base import Backend
    from verification.endpoint.check import _sample
    from verification.endpoint.probes import derived_seed
    from verification.records import Generation, SamplingParams

    class Recorder(Backend):
        def __init__(self):
            self.requests = []

        def generate(self, requests, progress=None):
            self.requests.extend(requests)
            return [Generation(text=str(r.params.seed)) for r in requests]

        def loglikelihood(self, requests, progress=None):
            raise NotImplementedError

    endpoint, weights = Recorder(), Recorder()
    out = _sample(endpoint, ["a", "b", "c"], 4, SamplingParams(temperature=0.3, seed=0), chat=True)
    _sample(weights, ["a", "b", "c"], 4, SamplingParams(temperature=0.3, seed=derived_seed(0, "weights samples")), chat=True)
    endpoint_seeds = [r.params.seed for r in endpoint.requests]
    weights_seeds = [r.params.seed for r in weights.requests]
    assert len(set(endpoint_seeds)) == 12 and len(set(weights_seeds)) == 12
    assert not set(endpoint_seeds) & set(weights_seeds)
    assert [len(group) for group in out] == [4, 4, 4] and out[1][0].text == "4"
    assert all(r.chat and r.params.temperature == 0.3 for r in endpoint.requests)
