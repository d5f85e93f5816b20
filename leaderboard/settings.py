"""The one settings module. Everything that differs between machines comes from the environment
through the typed readers of verification.config (the engine's settings are read there once, as
`EngineConfig.from_env()`, and copied here), which fail loudly on a bad value naming the variable.
Every variable is listed in the README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from leaderboard.env import check_redis_url, parse_database_url
from verification.config import (
    STANDARD_BENCHMARKS,
    EngineConfig,
    ImproperlyConfiguredEnv,
    env_bool,
    env_bytes,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_path,
    env_str,
    env_subset,
)

BASE_DIR = Path(__file__).resolve().parent.parent
ENGINE = EngineConfig.from_env()
VAR_DIR = ENGINE.var_dir

DEBUG = env_bool("DEBUG", False)
# Workers run code that strangers' models write, so they get only the secrets they use (database,
# broker, Hub token): with VERITY_PROCESS=worker the settings load without SECRET_KEY, and anything
# that would sign with it fails loudly (Django refuses an empty SECRET_KEY when it is read).
PROCESS = env_choice("VERITY_PROCESS", "web", ("web", "worker"))
_DEV_SECRET = "insecure-dev-only-secret-key-change-me-0123456789abcdef"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not SECRET_KEY and PROCESS == "web":
    raise ImproperlyConfiguredEnv("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS, on by default when DEBUG is off. The site runs behind a TLS proxy that sets
# X-Forwarded-Proto (and must overwrite a client's own); the health check inside the container
# speaks plain HTTP, so it is exempt from the redirect.
HTTPS = env_bool("VERITY_HTTPS", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# Proxies in front of the site that append the client's address to X-Forwarded-For (0: none,
# REMOTE_ADDR is the client). Per-IP limits read the address this many hops from the right.
TRUSTED_PROXIES = env_int("VERITY_TRUSTED_PROXIES", 0, minimum=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_ratelimit",  # sign-up and login throttling (counts in the shared cache below)
    "ninja",  # serves the API docs' Swagger UI from its static files (no CDN: works offline)
    "leaderboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (plotly, htmx, the API docs' Swagger UI) with DEBUG off, from STATIC_ROOT
    # (collectstatic); with DEBUG on, runserver serves them from the apps.
    *([] if DEBUG else ["whitenoise.middleware.WhiteNoiseMiddleware"]),
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "leaderboard.urls"
WSGI_APPLICATION = "leaderboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
    {
        # Only for the templates named *.jinja, read through engines["jinja2"] (never by the
        # lookup above): the board's rows, where Django templates' per-variable cost dominated.
        "NAME": "jinja2",
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"environment": "leaderboard.jinja.environment", "autoescape": True},
    },
]

# VAR_DIR is absolute, so this is sqlite://// + path.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'verity.sqlite3'}")
DATABASES = {"default": parse_database_url(DATABASE_URL, BASE_DIR)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web process and worker share the file: wait for the other writer instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
_test_db_name = env_str("VERITY_TEST_DB_NAME", "")
if _test_db_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# make run writes the bundled Redis's URL to var/redis.url before starting Django; a deployment
# sets REDIS_URL.
_BUNDLED_REDIS_URL_FILE = VAR_DIR / "redis.url"
_default_redis = (
    _BUNDLED_REDIS_URL_FILE.read_text().strip()
    if _BUNDLED_REDIS_URL_FILE.exists()
    else "redis://127.0.0.1:6379/0"
)
REDIS_URL = check_redis_url("REDIS_URL", env_str("REDIS_URL", _default_redis))


def _cache(url: str) -> dict:
    """locmem:// (one process: development and tests) or redis://… (shared by every web process,
    which the rate limits and the board's cache generation need)."""
    if url == "locmem://":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": check_redis_url("CACHE_URL", url), "KEY_PREFIX": "verity-cache"}


def _checked_rate(name: str, rate: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*/([1-9][0-9]{0,2})?[smhd]", rate):
        raise ImproperlyConfiguredEnv(f"{name}={rate!r} is not a rate like 10/m (a count per s, m, h or d)")
    return rate


# Default: a per-process cache in development, the Redis server otherwise.
CACHE_URL = env_str("CACHE_URL", "locmem://" if DEBUG else REDIS_URL)
CACHES = {"default": _cache(CACHE_URL)}
RATELIMIT_USE_CACHE = "default"
RATELIMIT_IP_META_KEY = "leaderboard.services.quotas.client_ip"
SILENCED_SYSTEM_CHECKS = [
    # django-ratelimit lists django-redis but not Django's own RedisCache, which increments
    # atomically too (jsocol/django-ratelimit#283).
    "django_ratelimit.W001",
    # A development server is one process: its local-memory cache is the shared cache.
    *(["django_ratelimit.E003"] if DEBUG else []),
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic puts the files WhiteNoise serves; outside var/ in an image (a volume over
# var/ would hide newer files).
STATIC_ROOT = env_path("VERITY_STATIC_ROOT", VAR_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "leaderboard" / "static"]
# plotly.min.js is served from the installed plotly package (no CDN: the site works offline).
import importlib.util as _importlib_util  # noqa: E402

_plotly_spec = _importlib_util.find_spec("plotly")
if _plotly_spec and _plotly_spec.submodule_search_locations:
    STATICFILES_DIRS.append(("plotly", Path(list(_plotly_spec.submodule_search_locations)[0]) / "package_data"))

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "verity@localhost")
# SMTP (EMAIL_BACKEND=…smtp.EmailBackend): the web app and the CPU worker send mail; the GPU
# worker is never given these.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

# --- Verity: the engine (see verification.config for each variable) ---------------------------
HF_TOKEN = ENGINE.hf_token
DATASETS_DIR = ENGINE.datasets_dir
PRIVATE_BENCHMARKS_DIR = ENGINE.private_benchmarks_dir
MODEL_CACHE_DIR = ENGINE.model_cache_dir
MODEL_CACHE_BYTES = ENGINE.model_cache_bytes
MAX_MODEL_BYTES = ENGINE.max_model_bytes
INFERENCE_BACKEND = ENGINE.inference_backend
ENGINE_OPTIONS = dict(ENGINE.engine)  # vLLM: TENSOR_PARALLEL_SIZE, GPU_MEMORY_UTILIZATION, VLLM_CPU_KVCACHE_SPACE
POOLS = ENGINE.pools  # worker pools by model size (VERITY_POOLS); () = one GPU queue for every model
DEFAULT_EVAL_LIMIT = ENGINE.default_eval_limit  # None = whole benchmark
CHUNK_SIZE = ENGINE.chunk_size
CHECKS = ENGINE.checks
CORE_BENCHMARKS = ENGINE.core_benchmarks
# Loopback endpoints only where explicitly allowed (tests, a local `vllm serve`); never on the
# public site.
ENDPOINT_ALLOW_LOOPBACK = ENGINE.endpoint_allow_loopback

# --- Verity: the workers and the site ------------------------------------------------------------
# A running run refreshes its heartbeat this often; one silent for RUN_STALE_AFTER_S has lost its
# worker; a queued run not picked up for RUN_REQUEUE_AFTER_S is sent again (lost broker message).
RUN_HEARTBEAT_S = env_float("VERITY_HEARTBEAT_S", 10.0, minimum=0.1)
RUN_STALE_AFTER_S = env_float("VERITY_STALE_AFTER_S", 120.0, minimum=1.0)
RUN_REQUEUE_AFTER_S = env_float("VERITY_REQUEUE_AFTER_S", 600.0, minimum=1.0)
SWEEP_INTERVAL_S = env_float("VERITY_SWEEP_INTERVAL_S", 60.0, minimum=0.1)
RECHECK_INTERVAL_S = env_float("VERITY_RECHECK_INTERVAL_S", 6 * 3600.0, minimum=1.0)
SUBMISSIONS_PER_DAY = env_int("SUBMISSIONS_PER_DAY", 10, minimum=1)
# Quotas on GPU time (see leaderboard.services.quotas): submissions per client address per day;
# the estimated GPU-hours of every submission still in flight, together; the largest claimed base
# (measured as a second model).
SUBMISSIONS_PER_IP_PER_DAY = env_int("VERITY_SUBMISSIONS_PER_IP_PER_DAY", 20, minimum=1)
QUEUE_GPU_HOURS = env_float("VERITY_QUEUE_GPU_HOURS", 100.0, minimum=0.0)
MAX_BASE_BYTES = env_bytes("VERITY_MAX_BASE_BYTES", 40 * 1024**3)
# What one GPU-hour costs this instance (0: no price; runs then show GPU-seconds only), and the
# currency it is in: each run's cost on its page is its GPU-seconds at this price.
GPU_HOUR_PRICE = env_float("VERITY_GPU_HOUR_PRICE", 0.0, minimum=0.0)
GPU_HOUR_CURRENCY = env_str("VERITY_GPU_HOUR_CURRENCY", "USD")
# Sign-up and login throttles per client address (login also per username), as django-ratelimit
# rates: "<count>/<s|m|h|d>".
SIGNUP_RATE = _checked_rate("VERITY_SIGNUP_RATE", env_str("VERITY_SIGNUP_RATE", "5/h"))
LOGIN_RATE = _checked_rate("VERITY_LOGIN_RATE", env_str("VERITY_LOGIN_RATE", "10/m"))
# The standard set a leaderboard average is taken over (benchmarks outside it still show on the
# model page).
LEADERBOARD_BENCHMARKS = env_subset("VERITY_LEADERBOARD_BENCHMARKS", STANDARD_BENCHMARKS, ())
# Absolute links in e-mails ("https://verity.example.org"); empty: site-relative links.
SITE_URL = env_str("SITE_URL", "").rstrip("/")
# Optional "Sign in with Hugging Face" (shown only when both are set); the base URL is for tests.
HF_OAUTH_CLIENT_ID = env_str("HF_OAUTH_CLIENT_ID", "")
HF_OAUTH_CLIENT_SECRET = env_str("HF_OAUTH_CLIENT_SECRET", "")
HF_OAUTH_BASE_URL = env_str("HF_OAUTH_BASE_URL", "https://huggingface.co")

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ALWAYS_EAGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Verity: bounded work (attempts, progress, the measuring time limit) -------------------------
# A run claimed this many times (its worker died, hung or hit the time limit each time) ends FAILED
# with its reason; so does a submission whose intake or conclusion was started this many times.
MAX_RUN_ATTEMPTS = env_int("VERITY_MAX_RUN_ATTEMPTS", 3, minimum=1)
MAX_SUBMISSION_ATTEMPTS = env_int("VERITY_MAX_SUBMISSION_ATTEMPTS", 3, minimum=1)
# A measuring run that shows no progress (items stored, steps logged, bytes downloaded) for this
# long is taken to hang: its heartbeat stops and the sweep hands it to another worker.
RUN_PROGRESS_WINDOW_S = env_float("VERITY_PROGRESS_WINDOW_S", 1800.0, minimum=1.0)
# measure_run's soft time limit: a run that reaches it keeps its stored items and is re-queued to
# resume (each resumption is one attempt).
MEASURE_SOFT_LIMIT_S = env_float("VERITY_MEASURE_SOFT_LIMIT_S", 6 * 3600.0, minimum=1.0)

# --- Verity: the safety check on the public leaderboard --------------------------------------------
# When on, a model appears on the public board (page, API, exports, plots) only with a valid safety
# result (XSTest measured, its run valid); its model page still exists and says why it is unlisted.
REQUIRE_SAFETY = env_bool("VERITY_REQUIRE_SAFETY", False)
