"""The one settings module. Everything that differs between machines comes from the environment
through the typed readers in leaderboard.env, which fail loudly on a bad value."""

from __future__ import annotations

from pathlib import Path

from leaderboard.env import (
    check_redis_url,
    env_bool,
    env_bytes,
    env_choice,
    env_int,
    env_list,
    env_path,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("VERITY_VAR_DIR", BASE_DIR / "var")
assert VAR_DIR is not None

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "insecure-dev-only-secret-key-change-me-0123456789abcdef"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    from leaderboard.env import ImproperlyConfiguredEnv

    raise ImproperlyConfiguredEnv("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",  # serves the API docs' Swagger UI from its static files (no CDN: works offline)
    "leaderboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
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
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "leaderboard" / "static"]
# plotly.min.js is served from the installed plotly package (no CDN: the site works offline).
import importlib.util as _importlib_util  # noqa: E402

_plotly_spec = _importlib_util.find_spec("plotly")
if _plotly_spec and _plotly_spec.submodule_search_locations:
    STATICFILES_DIRS.append(("plotly", Path(list(_plotly_spec.submodule_search_locations)[0]) / "package_data"))

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "verity@localhost")

# --- Verity ---------------------------------------------------------------------------------
HF_TOKEN = env_str("HF_TOKEN", "") or None
HF_HUB_CACHE = env_path("HF_HUB_CACHE", None)
_shared_datasets = BASE_DIR.parent / "shared" / "datasets"
DATASETS_DIR = env_path("DATASETS_DIR", _shared_datasets if _shared_datasets.is_dir() else None)
PRIVATE_BENCHMARKS_DIR = env_path("PRIVATE_BENCHMARKS_DIR", VAR_DIR / "private_benchmarks")
MODEL_CACHE_DIR = env_path("MODEL_CACHE_DIR", VAR_DIR / "model_cache")
MODEL_CACHE_BYTES = env_bytes("MODEL_CACHE_BYTES", 500 * 1024**3)
MAX_MODEL_BYTES = env_bytes("MAX_MODEL_BYTES", 200 * 1024**3)
INFERENCE_BACKEND = env_choice("INFERENCE_BACKEND", "vllm", ("vllm", "transformers"))
TENSOR_PARALLEL_SIZE = env_int("TENSOR_PARALLEL_SIZE", 1, minimum=1)
SUBMISSIONS_PER_DAY = env_int("SUBMISSIONS_PER_DAY", 10, minimum=1)
DEFAULT_EVAL_LIMIT = env_int("DEFAULT_EVAL_LIMIT", 0, minimum=0)  # 0 = whole benchmark
# Endpoint check (verification/endpoint): loopback endpoints only where explicitly allowed (tests,
# a local `vllm serve`); never on the public site. The check reads the same variable itself.
ENDPOINT_ALLOW_LOOPBACK = env_bool("VERITY_ENDPOINT_ALLOW_LOOPBACK", False)
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
