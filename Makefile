# One-command entry points; each sets itself up first (venv, Python packages, CDK CLI).
#   make demo   - the local simulation: every built-in scenario on moto
#   make test   - the whole test suite
#   make synth  - synthesize the stack from remediation.yaml (offline, no credentials)
#   make bench  - run the benchmarks and rewrite docs/benchmarks.md (about 20 minutes)
#   make screenshots - the approval pages in Chromium, desktop and phone, to docs/screenshots
#   make lock   - re-resolve requirements.lock from pyproject.toml

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

# apt-get needs root: sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup chromium demo test synth bench screenshots lock clean

setup: $(VENV)/.installed node_modules/.installed chromium

# The browser tests drive Debian's Chromium (Playwright's own browsers are never downloaded).
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/remediate simulate --all

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n auto

synth: setup
	cdk synth --quiet

bench: setup
	$(BIN)/python -m bench.run

screenshots: setup
	mkdir -p docs/screenshots
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -q -p no:xdist \
		tests/handlers/test_approval_endpoint.py -k browser

lock:
	rm -rf /tmp/autoremediate-lock && $(PYTHON) -m venv /tmp/autoremediate-lock
	/tmp/autoremediate-lock/bin/pip install --quiet -e ".[dev]"
	/tmp/autoremediate-lock/bin/pip freeze --exclude-editable | grep -v '^autoremediate' > requirements.lock

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache
