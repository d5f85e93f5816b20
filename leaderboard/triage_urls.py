"""URLs under /triage/ (maintainers only). The author's reply URL, `flag_reply`, lives in
leaderboard/urls.py because authors use it from the public model page."""

from __future__ import annotations

from django.urls import path

from leaderboard import triage

app_name = "triage"

urlpatterns = [
    path("", triage.queue, name="queue"),
    path("flags/<int:flag_id>/", triage.flag_detail, name="flag"),
    # Unknown actions answer 404 (leaderboard.triage.ACTIONS lists the known ones).
    path("flags/<int:flag_id>/<slug:action>", triage.flag_action, name="action"),
]
