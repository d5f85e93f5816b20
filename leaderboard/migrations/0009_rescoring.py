from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0008_entry_complete"),
    ]

    operations = []
