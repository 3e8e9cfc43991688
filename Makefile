# One-command entry points; each sets itself up first (venv, Python packages, CDK CLI).
#   make demo   - the local simulation: every built-in scenario on moto
#   make test   - the whole test suite
#   make synth  - synthesize the stack from remediation.yaml (offline, no credentials)
#   make bench  - run the benchmarks and rewrite docs/benchmarks.md (about 7 minutes)
#   make lock   - re-resolve requirements.lock from pyproject.toml

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup demo test synth bench lock clean

setup: $(VENV)/.installed node_modules/.installed

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

lock:
	rm -rf /tmp/autoremediate-lock && $(PYTHON) -m venv /tmp/autoremediate-lock
	/tmp/autoremediate-lock/bin/pip install --quiet -e ".[dev]"
	/tmp/autoremediate-lock/bin/pip freeze --exclude-editable | grep -v '^autoremediate' > requirements.lock

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache
