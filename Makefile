# gwipc build, test and demo targets. Run `make help` for a summary.
GO        ?= go
BUILD     := build
GOFLAGS   ?=
PKGS      := ./...
BENCHTIME ?= 2s

.PHONY: all build test run lint bench fuzz clean help

all: build

help:
	@echo "make build  - build everything into $(BUILD)/ (the gwipc CLI)"
	@echo "make test   - vet, then all tests with -race"
	@echo "make run    - the demo: a provider and a consumer process exchanging events"
	@echo "make bench  - benchmarks: gwipc vs a raw Unix-socket baseline, ratios and allocations"
	@echo "make fuzz   - run every fuzz target for FUZZTIME (default 20s) each"
	@echo "make lint   - gofmt and go vet"
	@echo "make clean  - remove $(BUILD)/"

build:
	@mkdir -p $(BUILD)
	$(GO) build $(GOFLAGS) -o $(BUILD)/gwipc ./cmd/gwipc

test: lint
	$(GO) test $(GOFLAGS) -race -count=1 -timeout 15m $(PKGS)

run: build
	$(BUILD)/gwipc demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./engine/ ./engine/wire/ ./shm/ ./engine/internal/transport/
	$(BUILD)/gwipc bench

FUZZTIME ?= 20s
fuzz:
	@grep -rl --include='*_test.go' '^func Fuzz' . | while read f; do \
	  d=$$(dirname $$f); for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/^func //'); do \
	    echo "== $$d $$fn"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$d || exit 1; \
	  done; done

clean:
	rm -rf $(BUILD)
