from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from leaderboard import feeds, methods_page, oauth, triage, views, views_badge, views_compare, watch_views
from leaderboard.api import api

urlpatterns = [
    path("", views.leaderboard, name="leaderboard"),
    path("healthz", views.healthz, name="healthz"),
    path("methods/", methods_page.methods_page, name="methods"),
    path("admin/", admin.site.urls),
    # maintainers' triage of flags; the author's reply is outside /triage/ (authors use it)
    path("triage/", include("leaderboard.triage_urls")),
    path("flags/<int:flag_id>/reply", triage.flag_reply, name="flag_reply"),
    path("plots/", views.plots_page, name="plots"),
    # accounts
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/hf/login/", oauth.hf_login, name="hf_login"),
    path("accounts/hf/callback/", oauth.hf_callback, name="hf_callback"),
    path("accounts/tokens/", views.api_tokens, name="api_tokens"),
    path("accounts/tokens/<int:token_id>/revoke", views.revoke_token, name="revoke_token"),
    path("accounts/owner-token/", views.owner_token, name="owner_token"),
    # submitting and following a run
    path("submit/", views.submit, name="submit"),
    path("submit/card-claims", views.submit_card_claims, name="submit_card_claims"),
    path("me/submissions/", views.my_submissions, name="my_submissions"),
    path("submissions/<int:pk>/", views.submission_status, name="submission_status"),
    path("submissions/<int:pk>/progress", views.submission_progress, name="submission_progress"),
    path("submissions/<int:pk>/withdraw", views.withdraw_submission, name="withdraw_submission"),
    # models
    path("models/<str:org>/<str:name>/", views.model_page, name="model"),
    path("models/<str:org>/<str:name>/samples", views.model_samples, name="model_samples"),
    path("models/<str:org>/<str:name>/history", views.model_history, name="model_history"),
    # following: flag feeds (Atom), watching a model
    path("feeds/flags.atom", feeds.FlagFeed(), name="flags_feed"),
    path("models/<str:org>/<str:name>/flags.atom", feeds.ModelFlagFeed(), name="model_flags_feed"),
    path("models/<str:org>/<str:name>/watch", watch_views.toggle_watch, name="watch_model"),
    path("me/watched/", watch_views.watched, name="watched_models"),
    path("compare/", views_compare.compare_page, name="compare"),
    path("badge/<str:org>/<str:name>.svg", views_badge.badge_svg, name="badge"),
    # JSON API (OpenAPI docs at /api/docs)
    path("api/", api.urls),
]
