# One image for web and CPU workers; the GPU worker builds with --build-arg VARIANT=gpu.
FROM python:3.11-slim-bookworm AS base
ARG VARIANT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VERITY_VAR_DIR=/var/lib/verity HF_HUB_CACHE=/var/cache/huggingface VERITY_STATIC_ROOT=/app/static
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
# The web app and the CPU worker run as `verity`. The GPU worker, which runs model-written code in
# the HumanEval sandbox (verification/sandbox.py), is started as root with CAP_SYS_ADMIN and no
# AppArmor confinement (see docker-compose.yml): the sandbox's launcher needs them for its
# namespaces and mounts, and every program it runs is dropped to an unprivileged uid of its own,
# with no capabilities, no_new_privs, an empty environment, no network and a read-only root that
# holds only /usr, /etc, /lib* and the interpreter. `python -m verification.sandbox --check`
# says whether a container can run it.
USER verity
EXPOSE 8000
CMD ["gunicorn", "leaderboard.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
