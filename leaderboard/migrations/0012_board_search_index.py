"""A trigram index for the board's search (?q=) on PostgreSQL (leaderboard.models.repo_search_index_sql)."""

from django.db import migrations


def _run(install):
    def apply(apps, schema_editor):
        from leaderboard.models import repo_search_index_sql

        with schema_editor.connection.cursor() as cursor:
            for statement in repo_search_index_sql(schema_editor.connection.vendor, install):
                cursor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("leaderboard", "0011_read_indexes")]

    operations = [migrations.RunPython(_run(True), _run(False))]
