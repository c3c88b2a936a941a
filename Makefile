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

# The backends' suites run TEST_JOBS at a time (each is mostly one busy
# core), one log each under .test-logs/; a failing suite prints its whole
# log, a passing one its summary. One thread per torch process: two
# suites on two cores otherwise thrash.
TEST_JOBS ?= 2
test: venv
	@mkdir -p .test-logs; printf '%s\n' $(BACKENDS) | xargs -P $(TEST_JOBS) -I{} sh -c '\
	  log=.test-logs/{}.log; start=$$(date +%s); \
	  KERAS_BACKEND={} TF_CPP_MIN_LOG_LEVEL=3 OMP_NUM_THREADS=1 \
	    $(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=25 tests > $$log 2>&1; rc=$$?; \
	  echo "=== KERAS_BACKEND={}: exit $$rc after $$(( $$(date +%s) - start )) s ($$log)"; \
	  if [ $$rc -eq 0 ]; then tail -n 3 $$log; else cat $$log; fi; exit $$rc'

benchmark: venv
	KERAS_BACKEND=$(BENCHMARK_BACKEND) $(VENV)/bin/keras-local benchmark $(BENCHMARK_ARGS)

clean:
	rm -rf $(VENV) benchmarks/out .test-logs
