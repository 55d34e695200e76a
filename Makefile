# The README's commands. Each target installs what is missing first (.ci/setup.sh).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: setup setup-e2e demo serve companion test lint fmt migration

setup:
	@./.ci/setup.sh

setup-e2e:  ## also Debian's chromium and the Node MCP clients of e2e/node
	@./.ci/setup.sh --e2e

demo: setup  ## the whole story in one terminal: server, scripted MCP agent, companion TUI (ARGS=--auto)
	$(UV) run vouchsim companion demo $(ARGS)

serve: setup
	$(UV) run vouchsim serve

companion: setup
	$(UV) run vouchsim companion $(ARGS)

test: setup-e2e  ## the whole suite: lint, import contracts, unit, HTTP and e2e tests
	$(UV) run ruff check .
	$(UV) run pytest

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy -p vouchsim.server -p vouchsim.companion

fmt: setup
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

migration: setup  ## make migration m="what changed"
	$(UV) run python -m vouchsim.server.storage.autogenerate "$(m)"
