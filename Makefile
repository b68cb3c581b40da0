# The two commands a newcomer needs:
#   make run    set up, then run the local example search (embedded SQLite store)
#   make test   set up, then lint and run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The versions whose wheels lie on this machine's disk (see README).
TORCH := torch==2.14.1 torchvision==0.29.1
SPEC ?= examples/fashion-mnist.yaml

.PHONY: run test test-fast setup setup-test lint crd bench clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Re-install when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed
	scripts/ensure-system.sh

setup-test: $(VENV)/.installed
	scripts/ensure-system.sh --tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ma2ml tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(VENV)/bin/hadolint Dockerfile

# Tests run in TEST_WORKERS processes (most wait on subprocesses, the store or the
# emulated API server, so two share two cores well); the few timed against the wall
# clock (marker `serial`) run alone afterwards.
TEST_WORKERS ?= 2
test: setup-test lint
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope -m "not serial"
	$(VENV)/bin/pytest -q -p no:cacheprovider -m serial

# The inner loop (after one `make setup-test`): no set-up, no lint, and none of the tests
# marked `slow` (each over about 10 s: real trainings, whole `ma2ml run`s, chaos, browsers,
# the operator end to end) or `serial`. `make test` still runs everything.
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope \
	    -m "not slow and not serial"

run: setup
	$(VENV)/bin/ma2ml run $(SPEC)

# Re-run the benchmark README reports into benchmarks/results/: the 100-seed table,
# the coupled-modules family and the noisy tables, the one-result-per-update
# table (40 seeds), time to accuracy on real training, the early-stopping
# replay of the committed learning curves, and multi-fidelity search on a simulated
# clock (30 seeds, every method, the peers in .venv-peers). Hours on 2 cores, so
# `make test` never runs it (tests/learner/test_benchmark_smoke.py and
# tests/benchmarks/test_multi_fidelity.py run smoke versions).
bench: $(VENV)/.installed bench-peers
	PYTHONPATH=. $(PY) benchmarks/search_efficiency.py
	PYTHONPATH=. $(PY) benchmarks/search_efficiency.py --tables coupled
	PYTHONPATH=. $(PY) benchmarks/search_efficiency.py --tables noisy
	tmp=$$(mktemp -d) && \
	PYTHONPATH=. $(PY) benchmarks/search_efficiency.py --batch 1 --seeds 40 \
	    --methods ma2ml ma2ml-no-credit tpe --out $$tmp && \
	cp $$tmp/search_efficiency.md benchmarks/results/search_efficiency_batch1.md && \
	rm -rf $$tmp
	PYTHONPATH=. $(PY) benchmarks/time_to_accuracy.py
	PYTHONPATH=. $(PY) benchmarks/early_stopping_replay.py --out benchmarks/results
	PYTHONPATH=. $(PY) benchmarks/multi_fidelity.py --seeds 30 --out benchmarks/results

# The peer multi-fidelity optimisers (DEHB, Syne Tune) that benchmarks/mf_peers.py adapts
# live in .venv-peers: they need numpy < 2 and must not touch the main venv. No torch
# there: the project goes in without its dependencies (ma2ml.spaces/spec need pydantic
# and pyyaml only). 1-2 minutes. Then: .venv-peers/bin/python benchmarks/mf_peers.py --smoke
bench-peers:
	python3 -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q --upgrade pip
	.venv-peers/bin/python -m pip install -q -r benchmarks/peers-requirements.txt
	.venv-peers/bin/python -m pip install -q --no-deps -e .
	.venv-peers/bin/python -c "import dehb, syne_tune, ma2ml.spaces, ma2ml.spec, ma2ml.store.stopping"

# Regenerate the CRD from the spec model (tests fail when either copy drifts).
crd: $(VENV)/.installed
	$(VENV)/bin/ma2ml crd > crds/pipelinesearch.yaml
	cp crds/pipelinesearch.yaml helm/ma2ml/crds/pipelinesearch.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
