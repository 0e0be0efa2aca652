# tokenrt — the two commands a user needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# tiktoken cannot download its encoding files offline; the shared folder carries them.
export TIKTOKEN_CACHE_DIR ?= $(abspath $(CURDIR)/../shared/tiktoken)
# Use uv from PATH, or install it with pip into .tools/ (no root needed).
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PROTOS := $(wildcard protos/tokenrt/v1/*.proto)
PROTO_OUT := libs/proto/src

.PHONY: help setup proto run up down status test test-fast lint bench clean

help:
	@echo "make run    install, start the stack (embedded NATS/Postgres/Valkey if none answer), demo"
	@echo "make test   install, then run the whole test suite against real NATS, Postgres, Redis"
	@echo "make down   stop what 'make run' started"
	@echo "make status show the health of every service and dependency"
	@echo "make proto  regenerate the Python code in $(PROTO_OUT) from protos/"
	@echo "make lint   ruff and mypy"
	@echo "make bench  run the benchmarks in bench/"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

# Re-sync only when the lock or a project file changed.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

setup: $(VENV)/.synced

proto: setup
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=$(PROTO_OUT) \
		--pyi_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) $(PROTOS)

# Start the stack (or use the one already running) and run the IDE demo against it.
run: setup
	$(BIN)/tokenrt up --detach --reuse
	$(BIN)/tokenrt demo

up: setup
	$(BIN)/tokenrt up --detach

down: setup
	$(BIN)/tokenrt down

status: setup
	$(BIN)/tokenrt status

test: setup
	$(BIN)/pytest -q

# Every benchmark in bench/, one after the other; what they print is also written to
# docs/benchmarks-latest.md with the date, commit and load (docs/benchmarks.md explains).
BENCHES := bench-grpc bench-counter bench-cache bench-budget bench-ledger bench-compressor bench-router
bench: setup
	@{ echo "# Latest \`make bench\`"; echo; \
	  echo "$$(date -u '+%Y-%m-%d %H:%M UTC'), commit $$(git rev-parse --short HEAD 2>/dev/null), $$(nproc) cores, load average at the start $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	  echo; echo '```'; } > docs/benchmarks-latest.md
	set -o pipefail; $(MAKE) --no-print-directory $(BENCHES) 2>&1 | tee -a docs/benchmarks-latest.md
	@{ echo '```'; echo; echo "load average at the end $$(cut -d' ' -f1-3 /proc/loadavg)"; } \
	  >> docs/benchmarks-latest.md

lint: setup
	$(BIN)/ruff check libs services tests bench examples
	$(BIN)/mypy libs/common/src libs/cli/src libs/pricing/src libs/usage/src libs/testkit/src \
		services/*/src

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

# --- counter benchmarks (issue 3): gRPC counting next to in-process tiktoken ---
.PHONY: bench-counter
bench-counter: setup
	$(BIN)/python bench/counter/bench.py

# --- the ceiling: a bare grpc.aio health server and client, no tokenrt code ---
.PHONY: bench-grpc
bench-grpc: setup
	$(BIN)/python bench/grpc_ceiling.py

# --- cache benchmarks (issue 6): Lookup of a 2k-token request over gRPC, semantic set ---
.PHONY: bench-cache
bench-cache: setup
	$(BIN)/python bench/cache/bench.py

# --- budget benchmarks (issue 4): Reserve+Commit pairs over gRPC, 4-scope chain, 12 limits ---
.PHONY: bench-budget
bench-budget: setup
	$(BIN)/python bench/budget/bench.py

# --- ledger benchmarks (issue 5): ingest rate, end-to-end lag, month summary from rollups ---
.PHONY: bench-ledger
bench-ledger: setup
	$(BIN)/python bench/ledger/bench_ledger.py

# --- compressor benchmarks (issue 7): 200k-token IDE context to 30k per strategy, 4x retention ---
.PHONY: bench-compressor
bench-compressor: setup
	$(BIN)/python bench/compressor/bench.py

# --- router benchmarks (issue 8): added latency over the simulator, full pipeline, c=1/16/64 ---
.PHONY: bench-router
bench-router: setup
	TIKTOKEN_CACHE_DIR=$${TIKTOKEN_CACHE_DIR:-$(CURDIR)/../shared/tiktoken} $(BIN)/python bench/router/bench.py

# --- chaos (issue 11): the fault suite with longer phases at a higher rate (`make test` runs it short) ---
.PHONY: chaos
chaos: setup
	CHAOS_LONG=1 $(BIN)/pytest -q tests/chaos -rxX

# --- fuzz (issue 11): the bad-input suite with 25x the examples and fresh randomness ---
.PHONY: fuzz
fuzz: setup
	TOKENRT_FUZZ_EXAMPLES=300 $(BIN)/pytest -q tests/fuzz
