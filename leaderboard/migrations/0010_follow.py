from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0009_rescoring"),
    ]

    operations = []
