from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("leaderboard", "0002_flagevent_append_only"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluationrun",
            name="not_run",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="attempts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="modelsubmission",
            name="attempts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="intake",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
