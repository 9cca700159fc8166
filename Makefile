# certportal — `make run` for a local demo, `make test` for every test.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
export GOFLAGS := -buildvcs=false

.PHONY: all build run test test-short lint staticcheck bench deps clean image fuzz

all: build

build: wasm $(BIN)/certportal $(BIN)/devvault

# The device-key module the page runs ("create the key on this device"):
# cmd/devicekey for GOOS=js GOARCH=wasm, Go's wasm_exec.js loader from the
# same Go installation (lib/wasm since Go 1.24, misc/wasm before), and a
# gzipped copy the portal serves to browsers that accept it. All three are
# generated, never committed (.gitignore), and embedded by web/web.go, so
# they must exist before the portal is built: every target that builds it
# depends on wasm. A portal built without them (plain `go build` or `go
# test` of a clean clone) works, but offers no device keys and refuses
# CERTPORTAL_DEVICE_KEYS=required at start-up.
WASM_DIR := web/wasm
.PHONY: wasm
wasm:
	GOOS=js GOARCH=wasm $(GO) build -trimpath -ldflags "-s -w" -o $(WASM_DIR)/devicekey.wasm ./cmd/devicekey
	@root=$$($(GO) env GOROOT); for d in lib/wasm misc/wasm; do \
		if [ -f "$$root/$$d/wasm_exec.js" ]; then cp "$$root/$$d/wasm_exec.js" $(WASM_DIR)/wasm_exec.js; exit 0; fi; done; \
		echo "wasm: no wasm_exec.js in $$root/lib/wasm or $$root/misc/wasm" >&2; exit 1
	gzip -9 -n -k -f $(WASM_DIR)/devicekey.wasm
	@echo "wasm: devicekey.wasm $$(stat -c %s $(WASM_DIR)/devicekey.wasm) bytes, gzip $$(stat -c %s $(WASM_DIR)/devicekey.wasm.gz) bytes"

# Always rebuilt: go's cache makes that cheap and keeps bin/ honest.
.PHONY: $(BIN)/certportal $(BIN)/devvault
$(BIN)/certportal: wasm
	$(GO) build -o $@ ./cmd/certportal

# deploy/devvault is its own module (a real Vault core, ~4 GB of modules on
# the first build, about ten minutes on two cores; seconds after that).
$(BIN)/devvault:
	cd deploy/devvault && $(GO) build -o ../../$@ .

# The OCI image, built without a container engine (none runs on the build
# machines and no registry is reachable): a static binary plus CA
# certificates, passwd and an empty /var/lib/certportal on an empty base,
# written as an OCI image layout. deploy/image is its own module so
# go-containerregistry stays out of the portal's build. Load it with e.g.
# `skopeo copy oci:bin/image:certportal:dev docker-daemon:certportal:dev`.
VERSION  ?= dev
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
image: wasm
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/certportal-static ./cmd/certportal
	cd deploy/image && $(GO) run . -binary ../../$(BIN)/certportal-static -out ../../$(BIN)/image -version $(VERSION) -revision "$(REVISION)" -tag certportal:$(VERSION)

# Starts the embedded dev Vault, configures it, and serves the portal with
# demo users. Ctrl-C stops everything.
run: build
	./deploy/scripts/run.sh

# Installs Debian packages the tests need when they are missing.
deps:
	./deploy/scripts/deps.sh

test: deps build staticcheck
	$(GO) test -race -count=1 -timeout 60m ./...
	@# The Helm chart's test is its own module (Helm and k8s.io/api stay out
	@# of the portal's build): a few minutes on the first build, seconds after.
	cd deploy/helm/charttest && $(GO) test -count=1 -timeout 15m ./...
	$(MAKE) fuzz FUZZTIME=$(TEST_FUZZTIME)

# Fuzz targets for every parser of client-chosen text. Their seeds (f.Add and
# each package's testdata/fuzz/<FuzzName>/, Go's corpus format, where
# `go test -fuzz` also writes any failing input it finds) run in every `go
# test`; `make fuzz` mutates each target for FUZZTIME, `make test` for
# TEST_FUZZTIME (about a minute in all).
FUZZTIME      ?= 30s
TEST_FUZZTIME ?= 3s
FUZZ_TARGETS  := internal/portal:FuzzNormalizeSerial internal/portal:FuzzCheckText internal/portal:FuzzValidLabel \
	internal/portal:FuzzCheckPassword internal/portal:FuzzIssueRequestValidate internal/portal:FuzzDownloadName \
	internal/ui:FuzzClientIP internal/ui:FuzzParseHop internal/ui:FuzzSelfPage internal/ui:FuzzSlashRedirect \
	internal/i18n:FuzzFromRequest
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg; done

# vet, gofmt and staticcheck: part of `make test`, so CI keeps them clean.
staticcheck:
	$(GO) vet ./...
	@out=$$(gofmt -l cmd internal web deploy); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

lint: staticcheck
	@# govulncheck needs vuln.go.dev, which this build network does not reach.
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 ./... || echo "lint: govulncheck could not run (no vulnerability database reachable)"

# Benchmarks report ratios against direct Vault calls from the same run; see docs/benchmarks.md.
# Two layouts: Vault and the portal pinned to separate cores (as on separate
# hosts in production), then sharing both cores (the worst case on this box).
bench: deps build
	$(GO) test -c -o $(BIN)/bench.test ./internal/bench/
	@echo "== layout: Vault on CPU 0, portal and clients on CPU 1"
	cd internal/bench && CERTPORTAL_DEVVAULT_CPUS=0 taskset -c 1 ../../$(BIN)/bench.test -test.run '^$$' -test.bench . -test.benchtime 1x -test.timeout 60m
	@echo "== layout: Vault, portal and clients sharing every CPU"
	cd internal/bench && ../../$(BIN)/bench.test -test.run '^$$' -test.bench . -test.benchtime 1x -test.timeout 60m

clean:
	rm -rf $(BIN)
