# `make run` serves session-buddy on the embedded SQLite store; `make test` installs
# everything into .venv and runs the test suite. Both work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install run test lint bench browser claude shells proxy

# Real Claude Code for its tests (npm ships a native binary); tmux for its interactive
# sessions. Without npm they are skipped, and say so.
CLAUDE_CODE_VERSION ?= 2.1.197
CLAUDE = .cache/claude-code/node_modules/.bin/claude
# axe-core, run inside the dashboard's pages by the accessibility test.
AXE_VERSION ?= 4.14.1
AXE = .cache/axe/node_modules/axe-core/axe.min.js

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# What serving needs, and no more (alert channels and the OpenTelemetry export
# included; no test or lint tools).
$(BIN)/.served: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[alerts,otel]'
	touch $@

install: $(BIN)/.installed

PORT ?= 8678

run: $(BIN)/.served
	$(BIN)/session-buddy serve --http --port $(PORT)

# Debian's chromium for the dashboard's browser tests (Playwright cannot download one
# here), and axe-core from npm for its accessibility test; without apt or npm they are
# skipped, and say so.
browser:
	@command -v chromium >/dev/null \
	  || (command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null) \
	  || (command -v apt-get >/dev/null && apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null) \
	  || echo "no chromium: the dashboard's browser tests will be skipped"
	@test -f $(AXE) \
	  || (command -v npm >/dev/null && npm install --silent --no-audit --no-fund \
	      --prefix .cache/axe axe-core@$(AXE_VERSION)) \
	  || echo "no npm: the dashboard's accessibility test will be skipped"

claude:
	@test -x $(CLAUDE) && $(CLAUDE) --version | grep -q '^$(CLAUDE_CODE_VERSION) ' \
	  || (command -v npm >/dev/null && npm install --silent --no-audit --no-fund \
	      --prefix .cache/claude-code @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)) \
	  || echo "no npm: the real Claude Code tests will be skipped"
	@command -v tmux >/dev/null \
	  || (command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >/dev/null) \
	  || echo "no tmux: the interactive Claude Code test will be skipped"

# Debian's zsh and fish for the shell integration's tests (bash is there); without apt
# or root they are skipped, and say so.
shells:
	@command -v zsh >/dev/null && command -v fish >/dev/null \
	  || (command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zsh fish >/dev/null) \
	  || (command -v apt-get >/dev/null && apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zsh fish >/dev/null) \
	  || echo "no zsh or fish: their shell integration tests will be skipped"

# Debian's nginx, for the dashboard behind a reverse proxy under a sub-path; without apt
# or root that test is skipped, and says so.
proxy:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx \
	  || (command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null) \
	  || (command -v apt-get >/dev/null && apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null) \
	  || echo "no nginx: the sub-path test will be skipped"

test: install browser claude shells proxy
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_mcp.py
	$(BIN)/python benchmarks/bench_scaleout.py
	$(BIN)/python benchmarks/bench_emitter.py
	$(BIN)/python benchmarks/bench_spool.py
	$(BIN)/python benchmarks/bench_claude_hook.py
	$(BIN)/python benchmarks/bench_claude_code.py
	$(BIN)/python benchmarks/bench_queries.py
	$(BIN)/python benchmarks/bench_retention.py
	$(BIN)/python benchmarks/bench_dashboard.py
	$(BIN)/python benchmarks/bench_alerts.py
	$(BIN)/python benchmarks/bench_shell.py
	$(BIN)/python benchmarks/bench_otlp.py
