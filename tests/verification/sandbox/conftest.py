"""Sandbox tests: every probe is a real program in a real sandbox; the hostile model and the
canary secrets come from `hostile_model` (reusable by any test that imports its fixtures)."""

from tests.verification.sandbox.hostile_model import canary_secrets, hostile_coder  # noqa: F401
