# One-word entry points. `make test` and `make benchmark` each make their own
# virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
BACKENDS ?= tensorflow jax torch
BENCHMARK_BACKEND ?= jax
BENCHMARK_ARGS ?=
SHARED_DATA := $(abspath ../shared/data)
# Offline data: ../shared/data when it exists (override by exporting it).
export KERAS_LOCAL_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: venv test benchmark clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

test: venv
	@set -e; for backend in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$backend"; \
	  KERAS_BACKEND=$$backend TF_CPP_MIN_LOG_LEVEL=3 $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests; \
	done

benchmark: venv
	KERAS_BACKEND=$(BENCHMARK_BACKEND) $(VENV)/bin/keras-local benchmark $(BENCHMARK_ARGS)

clean:
	rm -rf $(VENV) benchmarks/out
