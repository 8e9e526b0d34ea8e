# shipbot: the newcomer's two commands are `make demo` and `make test`.
GO       ?= go
BIN      := bin
# Debian packages the tests drive for real: <command>:<package>.
TEST_TOOLS := git:git ngircd:ngircd ii:ii aria2c:aria2 mktorrent:mktorrent opentracker:opentracker prometheus:prometheus

.PHONY: all build test demo deps lint clean bench-push bench-irc bench-fleet bench-rollout

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## demo: a whole release on this machine: 12 real agents in 3 racks, a good build
## that goes everywhere and a bad one that is rolled back. DEMO_FLAGS=--interactive, --irc, ...
demo: build
	$(BIN)/shipbot demo $(DEMO_FLAGS)

## test: install what the tests need, then vet and run every test with the race detector.
test: deps lint
	$(GO) test -race -count=1 -timeout 30m ./...

## deps: install the Debian packages the tests use, when missing (needs root or sudo).
deps:
	@missing=""; for t in $(TEST_TOOLS); do cmd=$${t%%:*}; pkg=$${t#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing test tools:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## bench-push: time the push of one artifact to many hosts by four methods (see README).
## Set BENCH_FLAGS, e.g. BENCH_FLAGS="--size-mib 256 --uplink-mbit 400".
bench-push: deps
	$(GO) build -o $(BIN)/benchpush ./cmd/benchpush
	$(BIN)/benchpush $(BENCH_FLAGS)

## bench-rollout: !ship to done for 8 real agents with zero bake, and a failing
## verdict to every host back on the previous release.
bench-rollout:
	$(GO) test -run '^$$' -bench BenchmarkRollout -benchtime 1x ./cmd/shipagent

## bench-fleet: desired-state latency, CPU and RSS of shipbot with 1k and 10k simulated agents.
bench-fleet:
	$(GO) build -o $(BIN)/ ./cmd/shipbot ./cmd/benchfleet
	$(BIN)/benchfleet --shipbot $(BIN)/shipbot $(BENCH_FLAGS)

## bench-irc: latency of !ready to the bot's answer through a real ngircd.
bench-irc: deps
	$(GO) test -run '^$$' -bench BenchmarkReadyAck -benchtime 1x ./bot/irc

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
