# The two commands a new user needs: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU wheel of torch. GPU users: install a CUDA torch build into .venv first (see README).
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= cpu,serve,train,federation,dev
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: all demo test lint typecheck pytest venv models clean help

help:
	@echo "make demo   run the main job on embedded defaults (see README)"
	@echo "make test   set up .venv from nothing and run lint, types and the whole suite"
	@echo "make models rebuild the default model bundles in models/"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check service training federation tests bench
	$(BIN)/ruff format --check service training federation tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: venv
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

# Rebuild the default bundles in models/ (see models/README.md); takes tens of minutes on a CPU.
models: venv
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/build_models.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
