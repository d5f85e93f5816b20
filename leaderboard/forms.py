"""Forms: turn posted fields into the submission payload, and show the service's errors next to
the input at fault. Every rule lives in leaderboard.services.submissions (and the claims
validator it calls), so the form and the API cannot disagree."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.urls import reverse_lazy

from leaderboard.models import Training
from leaderboard.services.submissions import SubmissionError, validate_submission
from verification.claims import claimable_benchmarks


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class ClaimRow:
    """One benchmark's inputs on the submit form, grouped for the template."""

    def __init__(self, form: forms.Form, slug: str):
        self.slug = slug
        self.score = form[f"score_{slug}"]
        self.shots = form[f"shots_{slug}"]
        self.cot = form[f"cot_{slug}"]
        self.chat_template = form[f"chat_{slug}"]


_TRISTATE = [("", "not stated"), ("true", "yes"), ("false", "no")]


class SubmissionForm(forms.Form):
    repo_id = forms.CharField(
        label="Hugging Face repo id", max_length=193,
        # Offer the card's scores as soon as the repo id is entered (htmx; the author confirms them).
        widget=forms.TextInput(attrs={
            "placeholder": "org/name", "hx-get": reverse_lazy("submit_card_claims"), "hx-trigger": "change",
            "hx-target": "#card-claims", "hx-include": "[name=repo_id],[name=revision]",
        }),
    )
    revision = forms.CharField(label="Revision", max_length=255, required=False, initial="main")
    base_model = forms.CharField(label="Claimed base model", max_length=193, required=False)
    training = forms.ChoiceField(choices=Training.choices, initial=Training.UNKNOWN)
    endpoint = forms.CharField(label="Endpoint (optional, OpenAI-compatible /v1)", max_length=500, required=False)
    endpoint_model = forms.CharField(label="Endpoint model name", max_length=200, required=False)

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.user = user
        self.benchmarks = claimable_benchmarks()
        for slug in self.benchmarks:
            self.fields[f"score_{slug}"] = forms.FloatField(
                label=f"{slug} score", required=False, widget=forms.NumberInput(attrs={"step": "any"})
            )
            self.fields[f"shots_{slug}"] = forms.IntegerField(label=f"{slug} shots", required=False)
            self.fields[f"cot_{slug}"] = forms.ChoiceField(choices=_TRISTATE, required=False, label="CoT")
            self.fields[f"chat_{slug}"] = forms.ChoiceField(choices=_TRISTATE, required=False, label="chat template")
        self.payload: dict[str, Any] | None = None

    def model_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("repo_id", "revision", "base_model", "training", "endpoint", "endpoint_model")]

    def claim_rows(self) -> list[ClaimRow]:
        return [ClaimRow(self, slug) for slug in self.benchmarks]

    def _claims(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        claims = []
        for slug in self.benchmarks:
            score = data.get(f"score_{slug}")
            if score is None:
                continue
            claim: dict[str, Any] = {"benchmark": slug, "score": score}
            if data.get(f"shots_{slug}") is not None:
                claim["shots"] = data[f"shots_{slug}"]
            for key, field in (("cot", f"cot_{slug}"), ("chat_template", f"chat_{slug}")):
                if data.get(field):
                    claim[key] = data[field] == "true"
            claims.append(claim)
        return claims

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        payload = {
            "repo_id": data.get("repo_id", ""),
            "revision": data.get("revision") or "main",
            "base_model": data.get("base_model") or None,
            "training": data.get("training") or "unknown",
            "endpoint": data.get("endpoint") or None,
            "endpoint_model": data.get("endpoint_model") or None,
            "claims": self._claims(data),
        }
        try:
            validate_submission(self.user, payload)
        except SubmissionError as exc:
            self.add_error(_form_field(exc.field, exc.message), exc.message)
            return data
        self.payload = payload
        return data


def _form_field(service_field: str, message: str) -> str | None:
    """Map a service error to the form input it is about (claims errors that name a top-level
    key go to that key's input)."""
    if service_field in {"repo_id", "revision"}:
        return service_field
    if service_field == "claims":
        for key in ("base_model", "training", "endpoint_model", "endpoint"):
            if f"'{key}'" in message:
                return key
    return None


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, label="Token name")
