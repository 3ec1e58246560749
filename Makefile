# Two entry points on a fresh machine: `make serve` and `make test`.
# Each bootstraps .venv on its own; the stamp file re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/heartwatch serve $(ARGS)

# axe-core (accessibility rules) for the browser tests, from npm into a folder the tests own; once installed,
# the tests run offline. Without npm the axe test skips and says why.
AXE := tests/.node/node_modules/axe-core/axe.min.js

$(AXE):
	@if command -v npm >/dev/null 2>&1; then npm install --prefix tests/.node --no-audit --no-fund --silent axe-core@4; \
	else echo "npm not found: the accessibility test will be skipped (apt-get install npm)"; fi

test: $(STAMP) $(AXE)
	$(BIN)/ruff check heartwatch tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/pings.py

clean:
	rm -rf $(VENV) build *.egg-info
