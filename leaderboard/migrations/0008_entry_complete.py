from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0007_run_pool"),
    ]

    operations = [
        migrations.AddField(
            model_name="leaderboardentry",
            name="complete",
            field=models.BooleanField(db_index=True, default=False),
        ),
    ]
