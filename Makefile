# dmworker: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
GO ?= go
# Whole-suite budget; CI allows 90 minutes, we aim for well under 30.
TEST_TIMEOUT ?= 30m

.PHONY: all deps demo test hosttest vet fmt-check bench

all: test

# deps installs the Debian packages the tests and the demo run: a throwaway
# MariaDB needs mariadbd and mariadb-install-db (mariadb-server), the relay and
# benchmark comparisons need mariadb-binlog (mariadb-client), the syncer's
# workload test needs sysbench, the online schema change tests
# pt-online-schema-change (percona-toolkit) and gh-ost, built from its Go
# module into a cache (scripts/build-gh-ost.sh; the tests build it too),
# bench/snapshot.sh mydumper, and TestSyncerMTR MariaDB's own test suite
# (mariadb-test).
deps:
	@bash scripts/install-deps.sh
	@bash scripts/build-gh-ost.sh >/dev/null

demo: deps
	@bash scripts/demo.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi

# test runs vet and the whole suite with the race detector against real
# servers; DMWORKER_REQUIRE_SERVERS=1 turns a missing server into a failure.
# Then the host module's tests (hosttest).
test: deps fmt-check vet
	DMWORKER_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	@$(MAKE) --no-print-directory hosttest

# hosttest vets and tests internal/hosttest, a module apart that uses only
# the public packages, as a host's own unit tests do (no server needed).
# -mod=mod lets its go.mod and go.sum follow the main module's dependencies
# (a replace points at this checkout) instead of failing until refreshed.
hosttest:
	cd internal/hosttest && GOFLAGS=-mod=mod $(GO) vet ./... && GOFLAGS=-mod=mod $(GO) test -race -count=1 ./...

# bench runs the benchmark scripts (needs sysbench for some; see BENCHMARKS.md).
bench: deps
	@bash bench/remote-read.sh
