# The README's commands. Each target installs what is missing first (.ci/setup.sh).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

# Bytecode is cached under .pycache/ (one tree, out of the sources) even where PYTHONDONTWRITEBYTECODE is set, as on
# our CI machines: there every Python process the suite starts (pytest's workers, each server, companion and SDK
# client) compiled about 1,400 modules again, 1.3 s of CPU each, and pytest re-wrote every test module's assertions.
# Not under .venv/: set-up runs Python (pip installing uv) before uv creates .venv, and uv refuses a .venv that
# already exists without a Python in it.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.pycache

# What `make lint` checks, and `make test` before the suite: lint, formatting, and types (the e2e suite included).
# `make test`'s set-up runs them (`make lint-checks`: the same, without set-up) as soon as .venv is ready, while apt-get
# and npm ci still work: on a simulated fresh 2-core machine, set-up + checks took 34 s instead of 46 (one after the
# other) or 40 (the installs overlapped, the checks after them). Where set-up is done it makes no difference.
define LINT
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy -p vouchsim.server -p vouchsim.companion -p e2e
endef

.PHONY: setup setup-e2e demo serve companion test lint lint-checks fmt migration

setup:
	@./.ci/setup.sh

setup-e2e:  ## also Debian's chromium and the Node MCP clients of e2e/node
	@./.ci/setup.sh --e2e

demo: setup  ## the whole story in one terminal: server, scripted MCP agent, companion TUI (ARGS=--auto)
	$(UV) run vouchsim companion demo $(ARGS)

serve: setup  ## the server alone (ARGS="--port 9000", say)
	$(UV) run vouchsim serve $(ARGS)

companion: setup  ## the companion: the TUI, or a command (ARGS="whoami")
	$(UV) run vouchsim companion $(ARGS)

test:  ## the whole suite: lint, formatting, types, import contracts, unit, HTTP and e2e tests
	@./.ci/setup.sh --e2e --lint
	$(UV) run pytest

lint: setup
	$(LINT)

lint-checks:  # what `make lint` checks, without its set-up: `make test`'s set-up runs it (.ci/setup.sh --lint)
	$(LINT)

fmt: setup
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

migration: setup  ## make migration m="what changed"
	$(UV) run python -m vouchsim.server.storage.autogenerate "$(m)"
