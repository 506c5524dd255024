# Inspect — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
SWIFT_FORMATTED := Package.swift $(shell find Sources Tests -name '*.swift' -not -path 'Sources/InspectProtos/*')
DATA_DIR ?= $(HOME)/.local/share/inspect

.PHONY: setup build test demo stop check-protos format lint swift-test python-test compose-check

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build --build-tests

# Everything CI runs.
test: setup check-protos lint build swift-test python-test compose-check

check-protos:
	@scripts/check-protos.sh

lint:
	$(SWIFT) format lint --strict $(SWIFT_FORMATTED)

format:
	$(SWIFT) format format -i $(SWIFT_FORMATTED)

swift-test:
	$(SWIFT) test --skip-build

python-test:
	INSPECT_BIN_DIR="$$($(SWIFT) build --show-bin-path)" python3 -m pytest -q Tests/python

compose-check:
	docker-compose -f compose.yaml config -q

# Starts Inspect in the background and leaves it running.
demo: build
	@bin="$$($(SWIFT) build --show-bin-path)"; \
	"$$bin/inspect" up --detach --data-dir "$(DATA_DIR)" && \
	echo "" && \
	echo "make demo: Inspect is running. The end-to-end demo session (inspect demo) is not built yet;" && \
	echo "this version stops here. Stop Inspect with: $$bin/inspect down --data-dir $(DATA_DIR)  (or: make stop)"

stop:
	@"$$($(SWIFT) build --show-bin-path)/inspect" down --data-dir "$(DATA_DIR)"
