# The README's two commands: `make demo` and `make test`. Everything installs into .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COLLECTION_PTH := $(VENV)/.collection-on-path
PYTEST_ARGS ?=

.PHONY: venv test lint demo bench bench-train chaos clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	# torch first, with pip: it takes the CPU build that lies on disk here; uv would fetch a CUDA build.
	$(VENV)/bin/pip install -q --disable-pip-version-check "torch==2.13.0" "uv>=0.4"
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -e '.[dev]'
	@touch $(STAMP)

# The collection on the venv's sys.path, where Ansible also looks for ansible_collections/: its modules resolve
# from any directory, not only where ansible.cfg's collections_path applies. A rule of its own, so that a venv
# made before it gets the file too.
$(COLLECTION_PTH): $(STAMP)
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	echo "$(CURDIR)/collections" > "$$site/universal_simulator_collections.pth"
	@touch $@

venv: $(STAMP) $(COLLECTION_PTH)

lint: venv
	$(VENV)/bin/ruff check .

# The e2e session (one shared local world, mostly waiting on instances) runs beside the rest of the suite,
# which runs on two workers (a file's tests stay together: its module fixtures are built once); the e2e
# report is printed after the rest's, and either failing fails the target.
test: venv lint
	@mkdir -p .state; $(PY) -m pytest tests/e2e $(PYTEST_ARGS) > .state/e2e.log 2>&1 & e2e=$$!; \
	$(PY) -m pytest --ignore=tests/e2e -n 2 --dist loadfile $(PYTEST_ARGS); rest=$$?; \
	wait $$e2e; e2e_rc=$$?; echo "== tests/e2e =="; cat .state/e2e.log; \
	exit $$(( rest != 0 || e2e_rc != 0 ))

demo: venv
	$(PY) -m tools.demo

bench: venv
	$(PY) -m tools.bench

bench-train: venv
	$(PY) -m training.bench.run

# The safety scenarios (host restart, preemption, kill -9, disk full, B2 and API outages, Ctrl-C, a vanished
# controller, budgets) against the local world; writes the table in docs/safety.md. CHAOS_ARGS=--slow for
# real durations (DELETE refused for longer than 300 s).
chaos: venv
	$(PY) -m tools.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
