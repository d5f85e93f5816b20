import django.db.models.deletion
from django.db import migrations, models

VERDICT_CHOICES = [("consistent", "Consistent"), ("discrepant", "Discrepant"), ("inconsistent", "Inconsistent"), ("unclaimed", "Unclaimed"), ("claimed_below", "Claimed Below"), ("invalid", "Invalid"), ("not_comparable", "Not Comparable")]


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0008_entry_complete"),
    ]

    operations = [
        migrations.CreateModel(
            name="RescoreLog",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("benchmark", models.CharField(max_length=64)),
                ("setup_key", models.CharField(default="{}", max_length=255)),
                ("old_version", models.CharField(max_length=32)),
                ("new_version", models.CharField(max_length=32)),
                ("n", models.PositiveIntegerField()),
                ("became_correct", models.PositiveIntegerField(default=0)),
                ("became_wrong", models.PositiveIntegerField(default=0)),
                ("unparsed_before", models.PositiveIntegerField(default=0)),
                ("unparsed_after", models.PositiveIntegerField(default=0)),
                ("measured_before", models.FloatField()),
                ("measured_after", models.FloatField()),
                ("verdict_before", models.CharField(choices=VERDICT_CHOICES, max_length=16)),
                ("verdict_after", models.CharField(choices=VERDICT_CHOICES, max_length=16)),
                ("flipped", models.JSONField(blank=True, default=list)),
                ("flag_actions", models.JSONField(blank=True, default=list)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("new_result", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="+", to="leaderboard.benchmarkresult")),
                ("old_result", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="+", to="leaderboard.benchmarkresult")),
                ("run", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="rescore_logs",
                                          to="leaderboard.evaluationrun")),
                ("submission", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE,
                                                 related_name="rescore_logs", to="leaderboard.modelsubmission")),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("became_correct__lte", models.F("n")), ("became_wrong__lte", models.F("n"))),
                        name="rescore_flips_within_n",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("old_version", models.F("new_version")), _negated=True),
                        name="rescore_changes_version",
                    ),
                ],
            },
        ),
    ]
