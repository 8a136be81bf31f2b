# Set-up is automatic: the first `make test` or `make reproduce` creates .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch keeps a GPU-less machine from pulling several GB of CUDA
# libraries. Where no local CPU wheel is found, it comes from PyTorch's CPU index.
TORCH_VERSION   ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PROFILE ?= quick
JOBS    ?= 2

.PHONY: all setup corpora test fuzz reproduce benchmark claims clean

# Real text for the real-world experiment, from Debian (C source, a dictionary, technical
# prose, scripture). Installed with apt-get when absent and this is root; otherwise the
# experiment says which package is missing, in one line.
CORPORA_PACKAGES := glibc-source dict-gcide perl-doc bible-kjv

all: reproduce

setup: $(STAMP)

corpora:
	@missing=""; for pkg in $(CORPORA_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing the real-text corpora from Debian:$$missing"; \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } >/dev/null 2>&1 \
			|| echo "Could not install$$missing: the real-world genres that need them will say so"; \
		else \
			echo "Not installed:$$missing (needs root and apt-get): the real-world genres that need them will say so"; \
		fi; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory corpora
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing the default (CUDA) torch build"; \
		$(BIN)/pip install -q "torch>=2.2"; \
	else \
		echo "No GPU: installing the CPU build of torch $(TORCH_VERSION)"; \
		$(BIN)/pip install -q "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
		|| $(BIN)/pip install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(BIN)/pip install -q -e ".[test,cluster,hf]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -q

# The contract fuzzer with many more examples than `make test` (FUZZ_EXAMPLES per CLI
# property; `make test` runs 150 + 60), nice'd; the outcome of every example run is logged
# to FUZZ_LOG and counted at the end.
FUZZ_EXAMPLES ?= 3000
FUZZ_LOG      ?= results/cache/fuzz_outcomes.jsonl
fuzz: $(STAMP)
	mkdir -p $(dir $(FUZZ_LOG)) && rm -f $(FUZZ_LOG)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_LOG=$(abspath $(FUZZ_LOG)) nice -n 10 \
		$(BIN)/python -m pytest -n $(JOBS) -q tests/test_contract_fuzz.py
	$(BIN)/python -m tests.test_contract_fuzz $(FUZZ_LOG)

reproduce: $(STAMP)
	$(BIN)/python -m figures --profile $(PROFILE) --jobs $(JOBS) --readme README.md

# Full-size runs; `make reproduce` runs the quick versions as part of the figures.
benchmark: $(STAMP)
	$(BIN)/python -m benchmarks.exact_solvers --out results/benchmarks/exact_solvers_full.csv
	$(BIN)/python -m benchmarks.modular_fit --out results/benchmarks/full
	$(BIN)/python -m benchmarks.synthetic_throughput --threads 1 --out results/benchmarks/full/synthetic_throughput.csv

claims: $(STAMP)
	$(BIN)/python -m theory claims --out results/claims_full.md --readme README.md

clean:
	rm -rf $(VENV) results/cache
