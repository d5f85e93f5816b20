# One image for web and CPU workers; the GPU worker builds with --build-arg VARIANT=gpu.
FROM python:3.11-slim-bookworm AS base
ARG VARIANT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VERITY_VAR_DIR=/var/lib/verity HF_HUB_CACHE=/var/cache/huggingface
RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 verity \
    && mkdir -p /var/lib/verity /var/cache/huggingface && chown -R verity /var/lib/verity /var/cache/huggingface
WORKDIR /app
COPY pyproject.toml README.md ./
COPY leaderboard ./leaderboard
COPY verification ./verification
COPY workers ./workers
COPY templates ./templates
COPY manage.py ./
# CPU: the CPU build of torch first, pinned, so nothing pulls the CUDA wheel.
RUN if [ "$VARIANT" = "gpu" ]; then \
        pip install -e ".[gpu]"; \
    else \
        pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
        && pip install -e ".[cpu]" \
        && pip uninstall -y torchvision torchaudio torchcodec || true; \
    fi \
    && python -m verification.setup_data \
    && DEBUG=1 python manage.py collectstatic --noinput
USER verity
EXPOSE 8000
CMD ["gunicorn", "leaderboard.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
