# Two commands work on a fresh machine: `make demo` and `make test`.
# Both create .venv and install everything first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test check-oldest-python lint format bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Take the CPU wheel of torch unless one is already importable: an
	# unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,trackers,hf]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/phalanx demo --out runs/demo

# Debian's chromium for the live-dashboard browser test (skipped when it cannot be had).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium not installed: the browser test will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest tests

# The oldest Python requires-python allows (3.10), as far as it can be checked without
# torch (no CPU wheel of torch 2.13.0 for it here): byte-compile, import every module,
# the CLI, the torch-free unit tests, in a throwaway venv; about 40 s. One line and
# skipped where no such Python or no package index is at hand. See .ci/oldest_python.py.
check-oldest-python:
	$(PY) .ci/oldest_python.py

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/ruff check src tests bench examples

format: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

# Benchmarks side by side (issue 4): phalanx, torch DDP, torchrun restarts, the ideal.
# bench-quick: < 10 min on 2 cores, prints the table. bench: all scenarios and repeats,
# regenerates docs/benchmarks.md and docs/img/bench_*.png.
bench: $(STAMP)
	$(BIN)/python bench/groups.py
	$(BIN)/python bench/data_workers.py
	$(BIN)/python -m bench.suite --suite full --docs

# Replica groups (issue 15): the planned uneven layout vs the ideal, memory per chip;
# writes docs/_generated/groups_bench.md and re-renders docs/benchmarks.md.
.PHONY: bench-groups
bench-groups: $(STAMP)
	$(BIN)/python bench/groups.py
	$(BIN)/python -m bench.report bench/results/full.json

# Sites (issue 17): outer synchronisation every H steps (DiLoCo-style, compressed) against
# per-step sync on the demo GPT at the same samples, in one process (about 11 min on 1 core);
# writes docs/_generated/sites_convergence.md (and its copy in docs/sites.md) and
# docs/img/sites_convergence.png.
.PHONY: bench-sites
bench-sites: $(STAMP)
	$(BIN)/python bench/sites_convergence.py

bench-quick: $(STAMP)
	$(BIN)/python -m bench.suite --suite quick

# Energy (issue 8): full power vs --objective energy vs --power-budget-w, and the thermal
# guard on/off; writes docs/_generated/energy_bench.md and re-renders docs/benchmarks.md.
.PHONY: bench-energy
bench-energy: $(STAMP)
	$(BIN)/python bench/energy.py --repeats 3
	$(BIN)/python -m bench.report bench/results/full.json

# The real-device check (issue 16), for a host with one GPU: the GPU plus two CPU replicas,
# a kill and a hang, in 32, fp16-mixed and bf16-mixed; writes bench/results/gpu-check.json.
# Without a GPU it says so and does nothing (GPU_CHECK_ARGS=--cpu-stand-in runs it on CPU).
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(BIN)/python -m bench.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache

# Chaos campaign (issue 9): randomised fault schedules against an emulated fleet, each
# checked for completion, exact math, exactly-once data, no healthy replica quarantined and
# no detection without an injected cause.
# chaos: the long run (200 schedules, CHAOS_JOBS at once; about 95 minutes on 2 busy cores),
# writes bench/results/chaos.json and docs/_generated/chaos_table.md and the table in
# docs/reliability.md. CHAOS_BUDGET_MIN=M starts no schedule after M minutes. Network cuts
# need root (network namespaces); without it they are left out and the table says so.
# chaos-quick: 3 schedules, results beside them.
CHAOS_JOBS ?= 4
.PHONY: chaos chaos-quick
chaos: $(STAMP)
	$(BIN)/python -m phalanx.chaos --schedules 200 --seed 1 --jobs $(CHAOS_JOBS) --out runs/chaos \
		--doc docs/reliability.md $(if $(CHAOS_BUDGET_MIN),--budget-min $(CHAOS_BUDGET_MIN))

chaos-quick: $(STAMP)
	$(BIN)/python -m phalanx.chaos --schedules 3 --seed 1 --jobs $(CHAOS_JOBS) --out runs/chaos-quick \
		--results bench/results/chaos-quick.json --table docs/_generated/chaos_quick_table.md
