from django.apps import AppConfig


class LeaderboardConfig(AppConfig):
    name = "leaderboard"
    verbose_name = "Verity leaderboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The "maintainers" group (who may triage flags) must exist on every database, including
        # test databases built without migrations, so it is (re)created after every migrate.
        from django.db.models.signals import post_migrate

        from leaderboard.services.triage import ensure_maintainers_group_after_migrate

        post_migrate.connect(
            ensure_maintainers_group_after_migrate, sender=self, dispatch_uid="leaderboard_maintainers_group"
        )
