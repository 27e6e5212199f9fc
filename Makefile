# Two commands do all set-up on a fresh machine:
#   make run    create .venv from the lock file, train + evaluate + record the default experiment
#   make test   create .venv from the lock file, run the whole test suite
# and, for the notebooks: make notebooks (JupyterLab), make notebooks-html (executed, as HTML pages);
# while coding: make check (lint, types, layers, the fast tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/quickstart.yaml
STAMP  := $(VENV)/.installed
# test processes: one per core (pytest-xdist)
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
# torch==2.13.0+cpu: a local wheel folder (PIP_FIND_LINKS, as pip uses it) or else PyTorch's CPU index;
# uv then takes each package's best match across both indexes (every file is hash-checked), where its
# default would look for numpy and the rest only on PyTorch's index
UV_FIND_LINKS ?= $(PIP_FIND_LINKS)
TORCH_INDEX   ?= $(if $(strip $(UV_FIND_LINKS)),,https://download.pytorch.org/whl/cpu)
# bytecode compiled once at install: where PYTHONDONTWRITEBYTECODE is set (CI, containers) every process
# would otherwise compile torch's and MLflow's sources again at import (seconds each)
UV_FLAGS := --python $(BIN)/python --no-deps --quiet --compile-bytecode $(if $(strip $(UV_FIND_LINKS)),--find-links $(UV_FIND_LINKS)) \
            $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match)
PIP := $(BIN)/python -m pip install -qq --disable-pip-version-check

.PHONY: run test check venv lock clean notebooks notebooks-html image

run: $(STAMP)
	$(BIN)/trainlab all --config $(CONFIG)

# the whole suite, over the cores; tests that share a costly module fixture (the images, a killed sweep) stay together
test: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup $(PYTEST_ARGS)

venv: $(STAMP)

# kernels get CurveZMQ keys from their manager (the kernelspec declares support); without them ipykernel runs
# over TCP unencrypted, and says so
KERNEL_KEYS := --KernelManager.transport_encryption=auto

# the notebooks are percent scripts: JupyterLab opens them as notebooks (right-click > Open With > Notebook)
notebooks: $(STAMP)
	$(BIN)/jupyter lab $(KERNEL_KEYS) notebooks/

# executed headless, each as an HTML page in build/notebooks/ (ignored by git); the data set and the
# run are the notebooks' defaults (digits, the latest finished run in ./mlruns)
notebooks-html: $(STAMP)
	mkdir -p build/notebooks
	for nb in notebooks/*.py; do \
		name=$$(basename $$nb .py); \
		$(BIN)/jupytext --quiet --to ipynb --output build/notebooks/$$name.ipynb $$nb && \
		$(BIN)/jupyter nbconvert --log-level=WARN $(KERNEL_KEYS) --to html --execute build/notebooks/$$name.ipynb || exit 1; \
	done
	@echo "pages: build/notebooks/*.html"

# Exact versions with hashes. uv installs them (seconds, where pip takes minutes); if uv cannot be had,
# pip installs the same hashed lock. The project itself is installed editable, fetching nothing.
$(STAMP): requirements.lock requirements-bootstrap.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if $(PIP) --require-hashes --no-deps -r requirements-bootstrap.lock; then \
		$(BIN)/uv pip install $(UV_FLAGS) --require-hashes -r requirements.lock && \
		$(BIN)/uv pip install $(UV_FLAGS) --no-build-isolation -e . ; \
	else \
		echo "uv could not be installed; installing with pip (a few minutes)"; \
		$(PIP) --require-hashes --no-deps -r requirements.lock && \
		$(PIP) --no-deps --no-build-isolation -e . ; \
	fi
	touch $@

# re-pin after changing dependencies in pyproject.toml (needs pip-tools): the development lock, then the
# images' locks at the same versions (the trainer's runtime dependencies; MLflow's server with its driver)
COMPILE = $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock:
	$(BIN)/python -m pip install --quiet pip-tools
	$(COMPILE) --extra test --extra notebooks --extra docs --extra pretrained -o requirements.lock pyproject.toml
	$(COMPILE) --constraint requirements.lock --extra pretrained -o requirements-runtime.lock pyproject.toml
	$(COMPILE) --constraint requirements.lock -o docker/mlflow-server.lock docker/mlflow-server.in

# the trainer image, labelled with the commit it is built from (docs/containers.md). DOCKER=podman works;
# IMAGE_ARGS passes more, e.g. --build-arg BASE=... or a local wheel folder
DOCKER ?= docker
IMAGE  ?= trainlab:latest
image:
	$(DOCKER) build -t $(IMAGE) --build-arg GIT_COMMIT=$$(git rev-parse HEAD) \
		--build-arg GIT_BRANCH=$$(git rev-parse --abbrev-ref HEAD) \
		--build-arg GIT_DIRTY=$$(test -z "$$(git status --porcelain)" && echo false || echo true) $(IMAGE_ARGS) .

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# the loop to run while coding (<= 90 s on 2 cores): lint, types, and the tests not marked slow or container,
# spread over the cores. `make test` runs everything (CI runs it)
check: $(STAMP)
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(WORKERS) -m "not slow and not container" $(PYTEST_ARGS)
