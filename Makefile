# The two commands a new user needs: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU wheel of torch. GPU users: install a CUDA torch build into .venv first (see README).
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= cpu,serve,train,federation,dev
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
# The OHIF Viewer served at /viewer: the built dist/ of @ohif/app from the npm registry, pinned
# by version and by the SHA-256 of its tarball (npm pack fetches only that one package).
OHIF_VERSION := 3.13.2
OHIF_SHA256  := b189d3963bfc58e9394a9db8c7be75d07beb029ec211dbb126d47b62969dd3f1
OHIF_DIR     := build/ohif
OHIF_STAMP   := $(OHIF_DIR)/.installed-$(OHIF_VERSION)

.PHONY: all demo test lint typecheck pytest venv ohif models clean help

help:
	@echo "make demo   run the main job on embedded defaults (see README)"
	@echo "make test   set up .venv from nothing and run lint, types and the whole suite"
	@echo "make models rebuild the default model bundles in models/"
	@echo "make ohif   install the OHIF Viewer served at /viewer (done by demo and test)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

$(OHIF_STAMP):
	@command -v npm >/dev/null || { echo "make ohif needs npm (Debian: apt-get install npm)"; exit 1; }
	rm -rf $(OHIF_DIR) && mkdir -p $(OHIF_DIR)
	cd $(OHIF_DIR) && npm pack --silent --pack-destination . @ohif/app@$(OHIF_VERSION) >/dev/null
	echo "$(OHIF_SHA256)  $(OHIF_DIR)/ohif-app-$(OHIF_VERSION).tgz" | sha256sum --check --quiet
	tar -xzf $(OHIF_DIR)/ohif-app-$(OHIF_VERSION).tgz -C $(OHIF_DIR) --strip-components=1 \
		package/dist package/LICENSE
	rm $(OHIF_DIR)/ohif-app-$(OHIF_VERSION).tgz
	touch $@

ohif: $(OHIF_STAMP)

lint: venv
	$(BIN)/ruff check service training federation tests bench
	$(BIN)/ruff format --check service training federation tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv ohif
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: venv ohif
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

# Rebuild the default bundles in models/ (see models/README.md); takes tens of minutes on a CPU.
models: venv
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/build_models.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
