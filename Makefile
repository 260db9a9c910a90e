# gwipc build, test and demo targets. Run `make help` for a summary.
GO        ?= go
BUILD     := build
GOFLAGS   ?=
PKGS      := ./...
BENCHTIME ?= 2s
# staticcheck 2026.2.2, installed by make tools and run by make lint
STATICCHECK := v0.8.2

# The C library: libgwipc.so.1 (SONAME), exporting only gwipc_* (the
# version script's path must be absolute: the external linker runs in a
# temporary directory).
LIB_LDFLAGS := -extldflags '-Wl,-soname,libgwipc.so.1 -Wl,--version-script=$(abspath capi/libgwipc.map)'

.PHONY: all build baselines build-cgocheck2 abi-check guard test run lint bench bench-micro bench-deps fuzz clean help tools

all: build

help:
	@echo "make build  - build everything into $(BUILD)/ (the gwipc CLI, libgwipc.so.1 and its libgwipc.so link)"
	@echo "make build-cgocheck2 - libgwipc.so.1 with GOEXPERIMENT=cgocheck2 into $(BUILD)/cgocheck2/"
	@echo "make abi-check - the functions include/gwipc.h declares are exactly what libgwipc.so.1 exports"
	@echo "make guard  - regenerate capi/guard.c (the exported C functions) from include/gwipc.h"
	@echo "make test   - lint, abi-check, all Go tests with -race, the C suites (also against the cgocheck2 build), install + pkg-config, the Python suite and the wheel"
	@echo "make wheel  - $(BUILD)/gwipc-<version>-py3-none-linux_<arch>.whl with libgwipc bundled"
	@echo "make py-test - the Python tests (unittest) on $$(PYTHON)"
	@echo "make run    - the demo: a C provider, Python and Go consumers, and gwipc status"
	@echo "make bench  - gwipc against raw sockets, a memfd floor, libqb and ZeroMQ: tables, $(BUILD)/bench.json"
	@echo "make bench-deps - install libqb-dev and libzmq3-dev (apt-get) so make bench compares with them too"
	@echo "make bench-micro - the in-process go test -bench micro-benchmarks"
	@echo "make fuzz   - run every fuzz target for FUZZTIME (default 20s) each"
	@echo "make lint   - gofmt, go vet and (if installed) staticcheck"
	@echo "make clean  - remove $(BUILD)/"
	@echo "make tools  - install the pinned staticcheck that make lint runs"

# Everything the CLI and the library are built from.
SRCS := $(shell git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null) go.mod go.sum \
        $(wildcard capi/*.c capi/*.h) capi/libgwipc.map include/gwipc.h

# $(call build-lib,ENV): libgwipc.so.1 into the target's directory, built
# with ENV. cgo's generated header is not shipped (the header is
# include/gwipc.h).
define build-lib
	@mkdir -p $(@D)
	$(1) $(GO) build $(GOFLAGS) -buildmode=c-shared -trimpath -ldflags "$(LIB_LDFLAGS)" -o $@ ./capi
	rm -f $(@D)/libgwipc.so.h
endef

build: $(BUILD)/gwipc $(BUILD)/libgwipc.so c-examples baselines

$(BUILD)/gwipc: $(SRCS)
	@mkdir -p $(@D)
	$(GO) build $(GOFLAGS) -o $@ ./cmd/gwipc

$(BUILD)/libgwipc.so.1: $(SRCS)
	$(call build-lib,)

# The library with cgo's full pointer checks, for the C tests.
$(BUILD)/cgocheck2/libgwipc.so.1: $(SRCS)
	$(call build-lib,GOEXPERIMENT=cgocheck2)

%/libgwipc.so: %/libgwipc.so.1
	ln -sf libgwipc.so.1 $@

build-cgocheck2: $(BUILD)/cgocheck2/libgwipc.so

abi-check: $(BUILD)/libgwipc.so.1
	sh capi/abi-check.sh include/gwipc.h $(BUILD)/libgwipc.so.1 capi

# Regenerates capi/guard.c (the exported functions) after a header change.
guard:
	sh capi/gen-guard.sh include/gwipc.h capi/errors.c > capi/guard.c

# The benchmark's C baselines (build/bench/): uds and memfd always; qb and zmq
# when pkg-config finds libqb and libzmq (make bench-deps installs them), else
# they are left out and gwipc bench says so.
BASELINE    := cmd/gwipc/internal/benchmark/baseline
BENCHBIN    := $(BUILD)/bench
BENCHCFLAGS := -O2 -Wall -Wextra -Werror

baselines: $(BENCHBIN)/uds $(BENCHBIN)/memfd baseline-qb baseline-zmq

$(BENCHBIN)/uds $(BENCHBIN)/memfd: $(BENCHBIN)/%: $(BASELINE)/%.c $(BASELINE)/bench.c $(BASELINE)/bench.h
	@mkdir -p $(BENCHBIN)
	$(CC) $(BENCHCFLAGS) -o $@ $< $(BASELINE)/bench.c

# $(1): program, $(2): pkg-config package, $(3): Debian package
define optional_baseline
.PHONY: baseline-$(1)
baseline-$(1):
	@mkdir -p $(BENCHBIN)
	@if pkg-config --exists $(2); then libs="$$$$(pkg-config --cflags --libs $(2))"; set -x; \
	  $(CC) $(BENCHCFLAGS) -o $(BENCHBIN)/$(1) $(BASELINE)/$(1).c $(BASELINE)/bench.c $$$$libs; \
	else rm -f $(BENCHBIN)/$(1); echo "$(3) not installed: no $(1) baseline (make bench-deps installs it)"; fi
endef
$(eval $(call optional_baseline,qb,libqb,libqb-dev))
$(eval $(call optional_baseline,zmq,libzmq,libzmq3-dev))

test: lint abi-check
	$(GO) test $(GOFLAGS) -race -count=1 -timeout 15m $(PKGS)
	@# The allocation checks once more without the race detector, whose
	@# runtime allocates on its own: there they are strict.
	$(GO) test $(GOFLAGS) -count=1 -run 'Allocate|HeapIsFlat' ./engine/
	$(MAKE) c-test c-test-cgocheck2 py-test

# The whole system: the C sensor daemon, a Python and a Go consumer, and
# gwipc status (cmd/gwipc/demo.go); exits 0 after a few seconds.
run: build c-examples
	PYTHONPATH=bindings/python $(BUILD)/gwipc demo --sensor-daemon $(BUILD)/examples/sensor_daemon \
	  --python $(PYTHON) --python-consumer bindings/python/examples/sensor_consumer.py

lint:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then echo staticcheck $(PKGS); staticcheck $(PKGS); \
		else echo "staticcheck not installed (make tools): skipped"; fi

# The build runs inside the recipe so that the total time includes it.
bench:
	@start=$$(date +%s); $(MAKE) --no-print-directory build && \
	$(BUILD)/gwipc bench -o $(BUILD)/bench.json && \
	echo "make bench: $$(( $$(date +%s) - start )) s in all, the build included; JSON in $(BUILD)/bench.json"

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./engine/ ./engine/internal/wire/ ./shm/ ./engine/internal/transport/

bench-deps:
	@if [ "$$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi; \
	$$sudo apt-get update && $$sudo apt-get install -y libqb-dev libzmq3-dev

FUZZTIME ?= 20s
fuzz:
	@grep -rl --include='*_test.go' '^func Fuzz' . | while read f; do \
	  d=$$(dirname $$f); for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/^func //'); do \
	    echo "== $$d $$fn"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$d || exit 1; \
	  done; done

clean:
	rm -rf $(BUILD)

tools:
	GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK)

# The C examples and the C test suite (c-examples, c-test, install, ...).
-include examples/c/examples.mk

# ---- the Python binding (bindings/python, docs/PYTHON.md) -----------------
# make wheel   - $(BUILD)/gwipc-<version>-py3-none-linux_<arch>.whl, the library bundled
# make py-test - the Python tests (unittest) on $(PYTHON), against $(BUILD)/
PYTHON     ?= python3
# The wheel is packed by Debian's python3 and its python3-wheel (the pyenv
# python3 on PATH has no wheel module); py-deps installs what is missing.
SYS_PYTHON := /usr/bin/python3
PY_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' bindings/python/gwipc/__init__.py)
PY_WHEEL   := $(BUILD)/gwipc-$(PY_VERSION)-py3-none-linux_$(shell uname -m).whl
PY_SRCS    := $(wildcard bindings/python/gwipc/*.py) bindings/python/gwipc/py.typed \
              bindings/python/pyproject.toml bindings/python/build_wheel.py docs/PYTHON.md

.PHONY: wheel py-test py-deps

py-deps:
	@$(SYS_PYTHON) -c 'import wheel, ensurepip, venv' 2>/dev/null || { \
	  echo "installing python3-wheel python3-venv (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-wheel python3-venv; }

wheel: $(PY_WHEEL)

$(PY_WHEEL): $(BUILD)/libgwipc.so.1 $(PY_SRCS) | py-deps
	$(SYS_PYTHON) bindings/python/build_wheel.py --lib $(BUILD)/libgwipc.so.1 --out $(BUILD)

# Needs the library, the Go tool and the C examples (the peers of the
# cross-language tests); each test bounds its own waits, timeout the whole.
py-test: build c-examples py-deps
	GWIPC_BUILD_DIR=$(abspath $(BUILD)) timeout 900 $(PYTHON) bindings/python/tests/run.py
