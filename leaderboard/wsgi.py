"""The web application, as gunicorn serves it (docker-compose.yml, performance/site_load.py)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
application = get_wsgi_application()

# A page builds tens of thousands of short-lived objects; with the default threshold (700) the
# collector ran about five times a request and scanned everything loaded at startup (Django, the
# app) in its older generations: 2.7 ms of a model page's 18. Startup's objects are moved out of
# its reach (gc.freeze) and the youngest generation is collected every 5,000 allocations: 0.9 ms.
gc.freeze()
gc.set_threshold(5000, 10, 10)
