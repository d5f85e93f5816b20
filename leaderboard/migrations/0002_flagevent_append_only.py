"""The audit trail is append-only in the database itself: a trigger refuses UPDATE and DELETE on
leaderboard_flagevent whatever code path tries (ORM bulk operations, raw SQL, admin)."""

from django.db import migrations


def _run(sql_for_vendor):
    def apply(apps, schema_editor):
        from leaderboard.services.triage import flag_event_trigger_reverse_sql, flag_event_trigger_sql

        vendor = schema_editor.connection.vendor
        builder = {"install": flag_event_trigger_sql, "remove": flag_event_trigger_reverse_sql}[sql_for_vendor]
        sql = builder(vendor)
        if vendor == "sqlite":
            # sqlite3's execute() runs one statement; trigger bodies contain ';'.
            schema_editor.connection.ensure_connection()
            schema_editor.connection.connection.executescript(sql)
        else:
            # A plain cursor: the SQL holds a literal '%' (RAISE format) that the schema
            # editor's parameter interpolation would reject.
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("leaderboard", "0001_initial")]

    operations = [migrations.RunPython(_run("install"), _run("remove"))]
