# Two entry points on a fresh machine: `make serve` and `make test`.
# Each bootstraps .venv on its own. `serve` installs heartwatch and its runtime dependencies only;
# `test` adds the test tools (pytest, playwright, mypy, ...). Each has its own stamp, re-made when
# pyproject.toml changes, so neither reinstalls what the other already did.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVE_STAMP := $(VENV)/.installed-serve
# The full development install (runtime + test tools); the name other scripts already use.
TEST_STAMP := $(VENV)/.installed

.PHONY: serve test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The test extras include the runtime, so a test install also satisfies `serve`.
# healthchecks-io (tests/test_hc_api.py: Healthchecks' own API client, unchanged) without its pins (httpx<0.28,
# pytz<2025) that would downgrade ours; what it imports is in the [test] extra.
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps healthchecks-io==0.4.4
	touch $@ $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/heartwatch serve $(ARGS)

# axe-core (accessibility rules) for the browser tests, from npm into a folder the tests own; once installed,
# the tests run offline. Without npm the axe test skips and says why.
AXE := tests/.node/node_modules/axe-core/axe.min.js

$(AXE):
	@if command -v npm >/dev/null 2>&1; then npm install --prefix tests/.node --no-audit --no-fund --silent axe-core@4; \
	else echo "npm not found: the accessibility test will be skipped (apt-get install npm)"; fi

test: $(TEST_STAMP) $(AXE)
	$(BIN)/ruff check heartwatch tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python bench/pings.py

clean:
	rm -rf $(VENV) build dist *.egg-info
