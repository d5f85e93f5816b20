"""gsm_fresh: our own GSM-style templates, instantiated per run from a recorded seed."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from verification.benchmarks import gsm_fresh

CALC = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
ARITHMETIC_ONLY = re.compile(r"^[0-9+\-*/(). ]+$")


def independent_value(expression: str) -> Fraction:
    """Recompute a calculator annotation without the module's evaluator: every number literal
    becomes a Fraction and Python evaluates the (character-checked) arithmetic."""
    assert ARITHMETIC_ONLY.match(expression), expression
    exact = re.sub(r"\d+(?:\.\d+)?", lambda m: f"Fraction('{m.group(0)}')", expression)
    return eval(exact, {"__builtins__": {}, "Fraction": Fraction})  # noqa: S307 - checked above


def test_at_least_thirty_templates_with_unique_ids():
    assert len(gsm_fresh.TEMPLATES) >= 30
    assert len(set(gsm_fresh.TEMPLATE_IDS)) == len(gsm_fresh.TEMPLATES)


@pytest.mark.parametrize("template", gsm_fresh.TEMPLATES, ids=gsm_fresh.TEMPLATE_IDS)
def test_thousand_draws_solver_and_independent_recomputation_agree(template):
    rng = random.Random(f"draws-{template.id}")
    answers = set()
    for _ in range(1000):
        item = template.instantiate(rng)
        solver_answer = template.solve(item["values"])
        solution, final_line = item["answer"].rsplit("\n", 1)
        assert final_line == f"#### {solver_answer}"
        annotations = CALC.findall(solution)
        assert len(annotations) == len(template.steps)
        for expression, stated in annotations:
            assert independent_value(expression) == Fraction(stated), (template.id, expression, stated)
        # The last calculation is the answer: recomputed from the text, it matches the solver.
        assert independent_value(annotations[-1][0]) == solver_answer
        assert 0 < solver_answer <= gsm_fresh.MAX_ANSWER
        assert all(Fraction(stated).denominator == 1 and Fraction(stated) >= 0 for _, stated in annotations)
        assert "{" not in item["question"] and "}" not in item["question"]
        assert item["question"].rstrip().endswith("?")
        answers.add(solver_answer)
    # Slots really vary: a template that always gives the same answer tests nothing.
    assert len(answers) >= 10


def test_same_seed_reproduces_items_and_new_seeds_differ():
    first = gsm_fresh.generate(1234, 60)
    again = gsm_fresh.generate(1234, 60)
    other = gsm_fresh.generate(1235, 60)
    assert first == again
    assert gsm_fresh.items_hash(first) == gsm_fresh.items_hash(again)
    assert gsm_fresh.items_hash(first) != gsm_fresh.items_hash(other)
    assert {item["template"] for item in first} == set(gsm_fresh.TEMPLATE_IDS)
    assert gsm_fresh.new_seed() != gsm_fresh.new_seed()


def test_generated_problems_are_not_copies_of_gsm8k(datasets_dir):
    import json

    with open(datasets_dir / "gsm8k" / "test.jsonl", encoding="utf-8") as handle:
        public = {json.loads(line)["question"].strip() for line in handle}
    fresh = gsm_fresh.generate(7, 300)
    assert not public & {item["question"] for item in fresh}


def test_evaluator_refuses_anything_but_arithmetic():
    assert gsm_fresh.evaluate("(3+4)*2/7") == 2
    for hostile in ("__import__('os')", "2**3", "a.b", "x"):
        with pytest.raises(gsm_fresh.TemplateError):
            gsm_fresh.evaluate(hostile)
