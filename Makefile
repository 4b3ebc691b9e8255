# app-connect — build, test, demo and benchmark.
#   make build      host binaries into build/
#   make build-arm  fully static ARMv5 soft-float and ARMv7 hard-float binaries
#   make package    the mPower custom-app tarballs of both into build/
#   make test       everything CI runs (installs missing test dependencies first)
#   make demo       the simulator and app-connect, uplinks flowing for ~20 s
#   make bench      end-to-end and outbox benchmarks; prints figures, asserts nothing
#   make bench-arm  the steady runs at 20/s with the ARMv5 binary under qemu-arm-static

GO       ?= go
GOPATH   := $(shell $(GO) env GOPATH)
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_LDFLAGS := -X main.version=$(VERSION)
ARM_TAGS := netgo osusergo sqlite_omit_load_extension
ARM_LDFLAGS := -s -w -linkmode external -extldflags -static $(VERSION_LDFLAGS)
QEMU     ?= qemu-arm-static

.PHONY: build build-arm package test deps fmt-check vet staticcheck gotest arm-check demo bench bench-arm clean

build:
	mkdir -p build
	CGO_ENABLED=1 $(GO) build -ldflags '$(VERSION_LDFLAGS)' -o build/app-connect ./cmd/app-connect
	$(GO) build -o build/conduit-sim ./cmd/conduit-sim

# The gateway binaries: cgo SQLite cross-compiled and linked statically, so
# they run on any mLinux whatever its glibc.
build-arm:
	mkdir -p build
	CGO_ENABLED=1 GOOS=linux GOARCH=arm GOARM=5 CC=arm-linux-gnueabi-gcc \
		$(GO) build -trimpath -tags '$(ARM_TAGS)' -ldflags '$(ARM_LDFLAGS)' \
		-o build/app-connect-armv5 ./cmd/app-connect
	CGO_ENABLED=1 GOOS=linux GOARCH=arm GOARM=7 CC=arm-linux-gnueabihf-gcc \
		$(GO) build -trimpath -tags '$(ARM_TAGS)' -ldflags '$(ARM_LDFLAGS)' \
		-o build/app-connect-armv7 ./cmd/app-connect

# The mPower custom-app tarballs (conduit.md §11): app-connect-<version>-mtcdt-mtcap.tar.gz
# (ARMv5 soft-float, MTCDT and MTCAP) and app-connect-<version>-mtcap3.tar.gz (ARMv7 hard-float).
package: build-arm
	bash scripts/package.sh -o build -v '$(VERSION)' \
		mtcdt-mtcap=build/app-connect-armv5 mtcap3=build/app-connect-armv7

deps:
	bash scripts/install-test-deps.sh

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi; echo "gofmt: ok"

vet:
	$(GO) vet ./...

staticcheck:
	$(GOPATH)/bin/staticcheck ./...

gotest:
	$(GO) test -race -count=1 -timeout 20m ./...

# Both ARM binaries must run under emulation: version, SQLite self-test, config check.
arm-check: build-arm
	@for b in build/app-connect-armv5 build/app-connect-armv7; do \
		file_info="$$(od -An -tx1 -j18 -N2 $$b | tr -d ' ')"; \
		[ "$$file_info" = "2800" ] || { echo "$$b is not an ARM ELF"; exit 1; }; \
		$(QEMU) $$b version || exit 1; \
		$(QEMU) $$b selftest || exit 1; \
		$(QEMU) $$b check-config --config packaging/mpower/app-connect.yml || exit 1; \
	done

test: deps fmt-check vet staticcheck gotest arm-check
	@echo "make test: all checks passed"

demo: build
	$(GO) run ./scripts/e2e demo -app-connect build/app-connect -sim build/conduit-sim

bench: build
	$(GO) run ./scripts/e2e bench -app-connect build/app-connect -sim build/conduit-sim
	$(GO) test -run '^$$' -bench . -benchtime 2s ./cache/

bench-arm: build build-arm
	$(GO) run ./scripts/e2e bench -only arm -app-connect build/app-connect -sim build/conduit-sim -arm build/app-connect-armv5 -qemu $(QEMU)

clean:
	rm -rf build
