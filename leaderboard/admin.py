from django import forms
from django.contrib import admin

from leaderboard import models


class ClaimInline(admin.TabularInline):
    model = models.Claim
    extra = 0


@admin.register(models.ModelSubmission)
class ModelSubmissionAdmin(admin.ModelAdmin):
    list_display = ("repo_id", "pinned_sha", "kind", "status", "submitter", "created_at")
    # The endpoint credential is a secret: never shown, not even to staff.
    exclude = ("endpoint_api_key",)
    list_filter = ("status", "training")
    search_fields = ("repo_id", "claimed_base")
    inlines = [ClaimInline]


@admin.register(models.EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = ("id", "model_repo", "model_sha", "role", "status", "progress_done", "progress_total")
    list_filter = ("status", "role", "backend")


@admin.register(models.BenchmarkResult)
class BenchmarkResultAdmin(admin.ModelAdmin):
    list_display = ("run", "benchmark", "measured", "ci_low", "ci_high", "n", "n_errors", "verdict")
    list_filter = ("benchmark", "verdict")


@admin.register(models.Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ("submission", "kind", "severity", "status", "assignee", "created_at")
    list_filter = ("kind", "severity", "status")


@admin.register(models.FlagEvent)
class FlagEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only."""

    list_display = ("flag", "action", "from_status", "to_status", "actor", "at")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.RescoreLog)
class RescoreLogAdmin(admin.ModelAdmin):
    """Read-only: written by `manage.py rescore` (leaderboard.services.rescore), the record of
    what a re-scoring changed."""

    list_display = ("run", "benchmark", "old_version", "new_version", "became_correct", "became_wrong",
                    "verdict_before", "verdict_after", "created_at")
    list_filter = ("benchmark", "new_version")
    search_fields = ("run__model_repo", "benchmark")
    list_select_related = ("run",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.register(models.KnownBase)
admin.site.register(models.LeaderboardEntry)


class PrivateBenchmarkUploadForm(forms.ModelForm):
    """Upload a private held-out set: the file goes to the private store (never the DB or a
    served directory); the row records slug, format, version and item count."""

    upload = forms.FileField(help_text="JSONL in the declared format")
    public = forms.CharField(required=False, help_text="public benchmark it is compared with (default by format)")

    class Meta:
        model = models.PrivateBenchmark
        fields = ("slug", "format")

    def clean(self):
        from leaderboard.management.commands.add_private_benchmark import store_private_benchmark
        from verification import private_sets

        cleaned = super().clean()
        upload = cleaned.get("upload")
        if upload and cleaned.get("slug") and cleaned.get("format") and not self.errors:
            try:
                self.stored = store_private_benchmark(
                    cleaned["slug"], cleaned["format"], upload.read(), cleaned.get("public") or None
                )
            except private_sets.PrivateSetError as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned

    def validate_unique(self):
        """The store decides whether this content is a new version (same content = same row)."""

    def save(self, commit=True):
        self.save_m2m = lambda: None  # the row has no many-to-many fields
        return self.stored


@admin.register(models.PrivateBenchmark)
class PrivateBenchmarkAdmin(admin.ModelAdmin):
    list_display = ("slug", "format", "version", "n_items", "public_counterpart", "created")
    readonly_fields = ("slug", "format", "content_hash", "version", "n_items", "public_counterpart", "created")
    exclude = ("path",)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = PrivateBenchmarkUploadForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("slug", "format", "upload", "public")
        return self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)
