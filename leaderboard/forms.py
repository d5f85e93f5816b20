"""Forms: the pages' and the API's query parameters, the account forms, and the submit form,
which turns posted fields into the submission payload and shows the service's errors next to
the input at fault. Every submission rule lives in leaderboard.services.submissions (and the
claims validator it calls), so the form and the API cannot disagree."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.urls import reverse_lazy

from leaderboard.models import ApiToken, SubmissionKind, Training
from leaderboard.oauth import HF_USERNAME_PREFIX
from leaderboard.selectors import DEFAULT_SORT, token_digest
from leaderboard.services.leaderboard import SIZE_CLASSES, leaderboard_benchmarks
from leaderboard.services.submissions import SubmissionError, ValidatedSubmission, validate_submission
from verification.claims import claimable_benchmarks


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)

    def clean_username(self) -> str:
        username = super().clean_username()
        # Reserved for accounts signed in with Hugging Face, so that a local account can never pass
        # for (or be mistaken for) a Hub account.
        if username.lower().startswith(HF_USERNAME_PREFIX):
            raise forms.ValidationError(
                f"Usernames starting with {HF_USERNAME_PREFIX!r} are reserved for accounts that sign in with "
                "Hugging Face."
            )
        return username


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
    kind = forms.ChoiceField(
        label="Submitting as", choices=[
            (SubmissionKind.AUTHOR, "the model's author (you control the repo)"),
            (SubmissionKind.COMMUNITY, "community verification (any public model, shown apart)"),
        ], initial=SubmissionKind.AUTHOR, required=False, widget=forms.RadioSelect,
    )
    base_model = forms.CharField(label="Claimed base model", max_length=193, required=False)
    training = forms.ChoiceField(choices=Training.choices, initial=Training.UNKNOWN)
    endpoint = forms.CharField(label="Endpoint (optional, OpenAI-compatible /v1)", max_length=500, required=False)
    endpoint_model = forms.CharField(label="Endpoint model name", max_length=200, required=False)
    # Never rendered back: a key posted with a bad form is not echoed into the page.
    endpoint_api_key = forms.CharField(
        label="Endpoint API key (optional, kept secret)", max_length=500, required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args: Any, user: Any = None, client_ip: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.user = user
        self.client_ip = client_ip
        self.validated: ValidatedSubmission | None = None
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
        return [self[name] for name in ("repo_id", "revision", "kind", "base_model", "training", "endpoint",
                                        "endpoint_model", "endpoint_api_key")]

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
            "kind": data.get("kind") or SubmissionKind.AUTHOR,
            "base_model": data.get("base_model") or None,
            "training": data.get("training") or "unknown",
            "endpoint": data.get("endpoint") or None,
            "endpoint_model": data.get("endpoint_model") or None,
            "endpoint_api_key": data.get("endpoint_api_key") or None,
            "claims": self._claims(data),
        }
        try:
            self.validated = validate_submission(self.user, payload, self.client_ip)
        except SubmissionError as exc:
            self.add_error(_form_field(exc.field, exc.message), exc.message)
            if "credentials" in exc.message:
                self._forget_endpoint()
            return data
        self.payload = payload
        return data


    def _forget_endpoint(self) -> None:
        """Never render a URL with credentials back into the page (the form re-displays input)."""
        self.data = self.data.copy()
        self.data["endpoint"] = ""


def _form_field(service_field: str, message: str) -> str | None:
    """Map a service error to the form input it is about (claims errors that name a top-level
    key go to that key's input)."""
    if service_field in {"repo_id", "revision", "kind", "base_model", "endpoint_api_key"}:
        return service_field
    if service_field == "claims":
        for key in ("base_model", "training", "endpoint_model", "endpoint"):
            if f"'{key}'" in message:
                return key
    return None


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, label="Token name")

    def create_token(self, user: Any) -> str:
        """Store a new token for `user` (its prefix and digest only) and return the key, which is
        shown this once."""
        key = "vty_" + secrets.token_urlsafe(32)
        ApiToken.objects.create(user=user, name=self.cleaned_data["name"], prefix=key[:12], key_hash=token_digest(key))
        return key


# Far past any real page, and small enough that the offset it makes stays a database integer.
MAX_PAGE = 1_000_000


def sort_keys() -> list[str]:
    return ["average", "repo_id", "delta", "badge", "refusal_unsafe", "refusal_safe", *leaderboard_benchmarks()]


class LeaderboardQuery(forms.Form):
    """The leaderboard's GET parameters (page and API); anything else than these shapes is a 400."""

    q = forms.CharField(required=False, max_length=100)
    size = forms.ChoiceField(required=False, choices=[("", "any size"), *((s, s) for s, _ in SIZE_CLASSES)])
    family = forms.CharField(required=False, max_length=100)
    license = forms.CharField(required=False, max_length=100)
    hide_flagged = forms.BooleanField(required=False)
    # The safety check's rates (points): refuses at least this share of unsafe prompts, refuses at
    # most this share of safe ones.
    min_refusal_unsafe = forms.FloatField(required=False, min_value=0, max_value=100)
    max_refusal_safe = forms.FloatField(required=False, min_value=0, max_value=100)
    sort = forms.CharField(required=False, max_length=80)
    page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE)

    def clean_sort(self) -> str:
        value = self.cleaned_data.get("sort") or DEFAULT_SORT
        if value.lstrip("-") not in sort_keys():
            raise forms.ValidationError(f"unknown sort column {value!r}; use one of {', '.join(sort_keys())}")
        return value


class SampleQuery(forms.Form):
    """The sample explorer's GET parameters."""

    submission = forms.IntegerField(min_value=1, max_value=2**63 - 1)
    benchmark = forms.SlugField(max_length=64)
    show = forms.ChoiceField(required=False, choices=[("", "all"), ("wrong", "wrong"), ("errored", "errored")])
    page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE)
