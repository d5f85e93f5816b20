"""Extractors and scorers: GSM8K numbers, math-verify, IFEval (lm-eval's checkers)."""

from __future__ import annotations

import json
import random

import pytest

from verification.scoring import ifeval, math_answers, numbers
from verification.scoring.ifeval_gold import construct_gold


@pytest.mark.parametrize("output,strict,flexible", [
    ("She pays 3 * 6 = 18 dollars.\n#### 18", "18", "18"),
    ("#### 1,000.00 is the total", "1,000.00", "1,000.00"),
    ("The total is $1,234 after 3 days.", None, "3"),
    ("It is -5 degrees, so #### -5.", "-5.", "-5."),
    ("no digits at all", None, None),
    ("", None, None),
])
def test_gsm8k_extraction(output, strict, flexible):
    assert numbers.extract_strict(output) == strict
    assert numbers.extract_flexible(output) == flexible


def test_gsm8k_chain_of_thought_strict_pattern_and_rational_match():
    assert numbers.extract_strict("So 4 + 4 = 8. The answer is 8.", cot=True) == "8."
    assert numbers.extract_strict("So 4 + 4 = 8. The answer is 8.", cot=False) is None
    assert numbers.numbers_equal("1,000.00", "1000")
    assert numbers.numbers_equal("$18", "18") and numbers.numbers_equal("50%", "50")
    assert not numbers.numbers_equal("18.5", "18")
    assert not numbers.numbers_equal(None, "18")
    assert numbers.gold_number("blah\n#### 72") == "72"
    with pytest.raises(ValueError):
        numbers.gold_number("no final line")


def test_math_verify_equivalences_and_failures():
    assert math_answers.check("\\frac{1}{2}", "So the answer is $\\boxed{0.5}$.")[0]
    assert math_answers.check("\\left( 3, \\frac{\\pi}{2} \\right)", "$\\boxed{(3, \\frac{\\pi}{2})}$")[0]
    correct, extracted, unparsed, _ = math_answers.check("24", "Thus $\\boxed{25}$.")
    assert not correct and not unparsed and extracted == "25"
    correct, extracted, unparsed, _ = math_answers.check("24", "I do not know.")
    assert (correct, extracted, unparsed) == (False, None, True)
    with pytest.raises(ValueError, match="gold"):
        math_answers.check("", "$\\boxed{1}$")
    assert math_answers.last_boxed("a \\boxed{\\frac{1}{2}} then \\boxed{x^{2}}") == "x^{2}"
    assert math_answers.last_boxed("no box") is None


def test_ifeval_uses_lm_eval_strict_and_loose():
    ids, kwargs = ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}]
    good = ifeval.check("p", ids, kwargs, "this is a calm reply with no commas at all and only small letters.")
    assert good["prompt_strict"] and good["strict"] == [True, True]
    # A first-line preamble breaks strict but loose (which drops the first line) forgives it.
    preamble = ifeval.check("p", ids, kwargs, "Sure, Here Goes:\nthis is a calm reply in lowercase only.")
    assert preamble["strict"] == [False, False] and preamble["loose"] == [True, True]
    assert not ifeval.check("p", ids, kwargs, "")["prompt_loose"]


def test_ifeval_check_is_deterministic_and_leaves_global_random_alone():
    # Key 1122 asks for the "letter" '#', which the upstream checker replaces by a random letter.
    ids, kwargs = ["keywords:letter_frequency"], [{"let_relation": "at least", "letter": "#", "let_frequency": 4}]
    random.seed(123)
    before = random.random()
    random.seed(123)
    results = {ifeval.check("p", ids, kwargs, "zzzz yyyy xxxx but few others")["prompt_strict"] for _ in range(5)}
    assert len(results) == 1
    assert random.random() == before


# Prompts that ask to repeat a text containing what another of their instructions forbids
# (commas, forbidden words, too many uses of a keyword): no response can pass the strict check.
UNSATISFIABLE_IFEVAL_KEYS = {374, 1627, 3369, 3371, 3718}


def test_constructed_ifeval_gold_covers_every_satisfiable_item(datasets_dir):
    rows = [json.loads(line) for line in open(datasets_dir / "ifeval" / "input_data.jsonl", encoding="utf-8")]
    built = {r["key"]: construct_gold(r["prompt"], r["instruction_id_list"], r["kwargs"]) for r in rows}
    missing = {key for key, gold in built.items() if gold is None}
    assert missing == UNSATISFIABLE_IFEVAL_KEYS
    by_key = {r["key"]: r for r in rows}
    for key in UNSATISFIABLE_IFEVAL_KEYS:
        assert "combination:repeat_prompt" in by_key[key]["instruction_id_list"]
    # Other-language answers included: their gold passes langdetect through lm-eval's checker.
    language_rows = [r for r in rows if "language:response_language" in r["instruction_id_list"]]
    assert len(language_rows) == 31 and all(built[r["key"]] for r in language_rows)
    for row in language_rows[:8] + rows[:40]:
        result = ifeval.check(row["prompt"], row["instruction_id_list"], row["kwargs"], built[row["key"]])
        assert result["prompt_strict"], row["key"]
