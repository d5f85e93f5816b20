import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0009_rescoring"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="flagevent",
            index=models.Index(
                models.OrderBy(models.F("at"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                name="flagevent_newest_idx",
            ),
        ),
        migrations.CreateModel(
            name="Watch",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("repo_id", models.CharField(max_length=193)),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="watches",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created", "-id"],
                "indexes": [models.Index(fields=["repo_id"], name="watch_repo_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("user", "repo_id"), name="watch_once_per_user_and_repo"),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("repo_id__regex", r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$"),
                            models.Q(("repo_id__contains", "--"), _negated=True),
                            models.Q(("repo_id__contains", ".."), _negated=True),
                        ),
                        name="watch_repo_id_shape",
                    ),
                ],
            },
        ),
    ]
