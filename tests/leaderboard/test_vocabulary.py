"""The database's choices are the engine's vocabulary, and every flag the engine can raise can be
stored: a new flag kind, verdict or status added on one side only fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from leaderboard import models
from verification import claims, vocabulary

VERIFICATION_DIR = Path(vocabulary.__file__).resolve().parent

CHOICES = [
    (models.SubmissionStatus, vocabulary.SUBMISSION_STATUSES),
    (models.Training, vocabulary.TRAINING_KINDS),
    (models.RunStatus, vocabulary.RUN_STATUSES),
    (models.RunRole, vocabulary.RUN_ROLES),
    (models.Verdict, vocabulary.VERDICTS),
    (models.FlagKind, vocabulary.FLAG_KINDS),
    (models.Severity, vocabulary.SEVERITIES),
    (models.FlagStatus, vocabulary.FLAG_STATUSES),
]


@pytest.mark.parametrize(("choices", "words"), CHOICES, ids=[c.__name__ for c, _ in CHOICES])
def test_model_choices_are_the_vocabulary(choices, words):
    assert tuple(choices.values) == words
    # Members are named after their values, so code reads Flag.Kind.SCORE_MISMATCH.
    assert [member.name for member in choices] == [word.upper() for word in words]


def test_model_fields_use_the_vocabulary_choices():
    fields = {
        (models.ModelSubmission, "status"): vocabulary.SUBMISSION_STATUSES,
        (models.ModelSubmission, "training"): vocabulary.TRAINING_KINDS,
        (models.EvaluationRun, "status"): vocabulary.RUN_STATUSES,
        (models.EvaluationRun, "role"): vocabulary.RUN_ROLES,
        (models.BenchmarkResult, "verdict"): vocabulary.VERDICTS,
        (models.Flag, "kind"): vocabulary.FLAG_KINDS,
        (models.Flag, "severity"): vocabulary.SEVERITIES,
        (models.Flag, "status"): vocabulary.FLAG_STATUSES,
    }
    for (model, name), words in fields.items():
        field = model._meta.get_field(name)
        assert tuple(value for value, _ in field.choices) == words, f"{model.__name__}.{name}"
        assert max(len(word) for word in words) <= field.max_length, f"{model.__name__}.{name}"


def test_claims_accept_exactly_the_training_kinds():
    assert tuple(claims.TRAINING_KINDS) == vocabulary.TRAINING_KINDS


def _raised_flag_kinds() -> dict[str, list[str]]:
    """Flag kinds written as literals in the engine: the first argument of a call to a function
    named like `make_flag`/`_flag`, and the "kind" of a dict literal that also has a "severity"
    (a flag built by hand). Returns {kind: [where]}."""
    found: dict[str, list[str]] = {}
    for path in sorted(VERIFICATION_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            kind = None
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
                first = node.args[0]
                if name.endswith("_flag") or name == "make_flag":
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        kind = first.value
            elif isinstance(node, ast.Dict):
                keys = {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
                value = keys.get("kind")
                if "severity" in keys and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    kind = value.value
            if kind is not None:
                found.setdefault(kind, []).append(f"{path.relative_to(VERIFICATION_DIR.parent)}:{node.lineno}")
    return found


def test_every_flag_kind_a_check_can_raise_is_a_choice():
    raised = _raised_flag_kinds()
    # The scan sees the checks' flags (provenance, contamination, endpoint), not only compare's.
    assert {"base_model_mismatch", "contamination", "heldout_gap", "endpoint_mismatch"} <= set(raised)
    unknown = {kind: where for kind, where in raised.items() if kind not in models.FlagKind.values}
    assert unknown == {}
    named = {value for name, value in vars(vocabulary).items() if name.isupper() and value in vocabulary.FLAG_KINDS}
    assert named == set(models.FlagKind.values)
