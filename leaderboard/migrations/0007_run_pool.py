from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0006_entry_safety"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluationrun",
            name="pool",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
