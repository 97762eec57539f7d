# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or reuses .venv and installs what it needs from the registries.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip --disable-pip-version-check
# PyTorch's CPU build, installed before anything that depends on torch so that
# no unpinned requirement pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
PYTEST := $(VPY) -m pytest

.PHONY: demo test test-all lint bench install clean

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "meson-python>=0.15" "meson>=1.1" ninja

# Test dependencies, reinstalled only when pyproject.toml changes.
$(VENV)/.test-deps: pyproject.toml | $(VPY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q "jax>=0.4.30" "tensorflow-cpu>=2.16" "entmax>=1.3" zarr
	$(PIP) install -q --no-build-isolation ".[test]"
	touch $@

# Builds and installs the package itself (with its compiled kernel) every time,
# so the tests always run what a user would install.
install: | $(VPY)
	$(PIP) install -q --no-build-isolation --no-deps --force-reinstall .

# The figures of `softmax plot`, written by `make demo`.
DEMO_OUTPUT := demo-output
PLOTS := temperature activations cross-entropy jacobian

demo: | $(VPY)
	$(PIP) install -q --no-build-isolation ".[plot]"
	$(VPY) -m softmaxkit.demo
	mkdir -p $(DEMO_OUTPUT)
	for kind in $(PLOTS); do $(VPY) -m softmaxkit plot $$kind -o $(DEMO_OUTPUT)/$$kind.png || exit 1; done
	@echo "figures written to $(DEMO_OUTPUT)/: $(PLOTS)"

DOCTEST_FILES := README.md docs/tutorial.md

# Doctests run in the installed package (--pyargs) and in the Markdown documents.
DOCTESTS := --doctest-modules --doctest-glob="*.md" --pyargs softmaxkit $(DOCTEST_FILES)

test: $(VENV)/.test-deps install
	$(PYTEST) -q -m "not slow" $(DOCTESTS) tests

test-all: $(VENV)/.test-deps install
	$(PYTEST) -q $(DOCTESTS) tests

lint: $(VENV)/.test-deps
	$(VPY) -m ruff check src tests benchmarks

bench: $(VENV)/.test-deps install
	$(VPY) benchmarks/run.py

clean:
	rm -rf build builddir dist $(VENV)
