"""The migrations describe the models exactly, and the suite's database was built by them
(the append-only trigger is a migration, not a fixture)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection


@pytest.mark.django_db
def test_no_model_change_without_a_migration():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits non-zero on drift
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_flag_event_trigger_installed_by_migration():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'leaderboard_flagevent_append_only'"
        )
        assert cursor.fetchone()[0] == 1
