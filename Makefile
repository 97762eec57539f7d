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

.PHONY: demo test test-all test-oldest test-asan lint bench install clean

# numpy is a build requirement: the compiled kernels include its C headers, and
# pip runs without build isolation here.
$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "meson-python>=0.18" "meson>=1.1" ninja "numpy>=1.25"

# Test dependencies, reinstalled only when pyproject.toml changes.
$(VENV)/.test-deps: pyproject.toml | $(VPY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q --no-build-isolation ".[test]"
	touch $@

# Builds and installs the package itself (with its compiled kernel) every time,
# so the tests always run what a user would install.
install: | $(VPY)
	$(PIP) install -q --no-build-isolation --no-deps --force-reinstall .

# The figures of `softmax plot`, written by `make demo`.
DEMO_OUTPUT := demo-output
PLOTS := temperature activations cross-entropy jacobian sparse

demo: | $(VPY)
	$(PIP) install -q --no-build-isolation ".[plot]"
	$(VPY) -m softmaxkit.demo
	mkdir -p $(DEMO_OUTPUT)
	for kind in $(PLOTS); do $(VPY) -m softmaxkit plot $$kind -o $(DEMO_OUTPUT)/$$kind.png || exit 1; done
	@echo "figures written to $(DEMO_OUTPUT)/: $(PLOTS)"

DOCTEST_FILES := README.md docs/tutorial.md

# Doctests run in the installed package (--pyargs) and in the Markdown documents.
DOCTESTS := --doctest-modules --doctest-glob="*.md" --pyargs softmaxkit $(DOCTEST_FILES)

# The kernel tests, run again on each other variant of the compiled kernels that this
# machine supports (the main stage runs everything on the best one): avx2 where the best
# is avx512, then the portable baseline (what a CPU without AVX2 runs). Every stage always
# runs; a failure of any is reported and fails the target at the end. SIMD_BEST names the
# best variant instead of asking the installed package (softmaxkit._kernels.simd()).
KERNEL_TESTS := tests/test_kernels.py tests/test_kernel_hardening.py tests/test_kernel_pool.py \
	tests/test_cross_entropy_fast.py tests/test_accuracy.py tests/test_edges.py \
	tests/test_logsumexp.py tests/test_simd.py tests/test_cross_entropy_plain.py
SIMD_BEST ?=
test: $(VENV)/.test-deps install
	@failed=""; best="$(SIMD_BEST)"; \
	[ -n "$$best" ] || best=$$(env -u SOFTMAXKIT_SIMD $(VPY) -c \
	  "from softmaxkit import _kernels; print(_kernels.simd() or 'none')"); \
	case $$best in avx512) others="avx2 baseline" ;; avx2) others="baseline" ;; *) others="" ;; esac; \
	echo "# The main stage: every test, on the best variant of this machine ($$best)."; \
	env -u SOFTMAXKIT_SIMD $(PYTEST) -q -m "not slow" $(DOCTESTS) tests || failed="$$failed main"; \
	for simd in $$others; do \
	  echo "# The kernel tests again on the $$simd variant (SOFTMAXKIT_SIMD=$$simd)."; \
	  SOFTMAXKIT_SIMD=$$simd $(PYTEST) -q -p no:cacheprovider $(KERNEL_TESTS) || failed="$$failed $$simd"; \
	done; \
	if [ -n "$$failed" ]; then \
	  for stage in $$failed; do echo "make test: the $$stage stage FAILED"; done; \
	  echo "make test: stages run: main $$others; failed:$$failed"; \
	  exit 1; \
	fi; \
	echo "make test: stages run and passed: main $$others"

# Everything, slow tests included, then the suite on the oldest declared versions.
test-all: $(VENV)/.test-deps install
	@status=0; \
	$(PYTEST) -q $(DOCTESTS) tests || status=1; \
	$(MAKE) --no-print-directory test-oldest || status=1; \
	exit $$status

# The oldest versions the package declares, in a venv of their own: the Python of
# requires-python and the floors of the dependencies and of the build (the pins below
# are those floors, checked by tests/test_oldest_versions.py), with the test tools'
# newest releases that take that NumPy. The optional array libraries are absent there:
# the tests that need them skip. The slow tests run in test-all's main stage only.
OLDEST_VENV := .venv-oldest
OLDEST_VPY  := $(OLDEST_VENV)/bin/python
OLDEST_PIP  := $(OLDEST_VPY) -m pip --disable-pip-version-check
# pyenv's Python 3.10 where there is one, else python3.10 on the PATH.
PYTHON_OLDEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) python3.10)
OLDEST_PINS := numpy==1.25 array-api-compat==1.11 rich==12 meson-python==0.18 meson==1.1
OLDEST_TOOLS := ninja pytest hypothesis mpmath scipy

$(OLDEST_VPY):
	$(PYTHON_OLDEST) -c "import sys; assert sys.version_info[:2] == (3, 10), sys.version"
	$(PYTHON_OLDEST) -m venv $(OLDEST_VENV)

# Reinstalled when the Makefile (its pins) changes; the constraints keep the tools from
# moving NumPy or the other floors.
$(OLDEST_VENV)/.deps: Makefile | $(OLDEST_VPY)
	printf '%s\n' $(OLDEST_PINS) > $(OLDEST_VENV)/constraints.txt
	$(OLDEST_PIP) install -q -c $(OLDEST_VENV)/constraints.txt $(OLDEST_PINS) $(OLDEST_TOOLS)
	touch $@

test-oldest: $(OLDEST_VENV)/.deps
	$(OLDEST_PIP) install -q --no-build-isolation --no-deps --force-reinstall .
	$(OLDEST_VPY) -m pytest -q -m "not slow" -p no:cacheprovider tests

# The kernel tests against a build of the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer (Python itself is not instrumented: libasan is preloaded).
ASAN_BUILD := build/asan
ASAN_SITE  := build/asan-site
test-asan: $(VENV)/.test-deps
	rm -rf $(ASAN_SITE)
	test -d $(ASAN_BUILD) || $(VENV)/bin/meson setup $(ASAN_BUILD) --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fno-sanitize-recover=undefined
	$(VENV)/bin/ninja -C $(ASAN_BUILD)
	mkdir -p $(ASAN_SITE) && cp -r src/softmaxkit $(ASAN_SITE)/
	rm -f $(ASAN_SITE)/softmaxkit/_kernels/*.so
	cp $(ASAN_BUILD)/_kernel*.so $(ASAN_SITE)/softmaxkit/_kernels/
	PYTHONPATH=$(ASAN_SITE) LD_PRELOAD="$$(cc -print-file-name=libasan.so)" \
		ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(VPY) -c "import softmaxkit._kernels as k; assert k.kernel_available(); \
		assert 'asan-site' in k.__file__, k.__file__"
	PYTHONPATH=$(ASAN_SITE) LD_PRELOAD="$$(cc -print-file-name=libasan.so)" \
		ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(PYTEST) -q -p no:cacheprovider tests/test_kernels.py tests/test_kernel_pool.py \
		tests/test_kernel_hardening.py

lint: $(VENV)/.test-deps
	$(VPY) -m ruff check src tests benchmarks

# The benchmarks' own peers (ONNX Runtime, and onnx to build its models), apart from the
# test dependencies: `make test` does not need them.
BENCH_DEPS := onnxruntime onnx
$(VENV)/.bench-deps: | $(VENV)/.test-deps
	$(PIP) install -q $(BENCH_DEPS)
	touch $@

bench: $(VENV)/.test-deps $(VENV)/.bench-deps install
	$(VPY) benchmarks/run.py

clean:
	rm -rf build builddir dist $(VENV) $(OLDEST_VENV)
