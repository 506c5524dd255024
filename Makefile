# Inspect — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
SWIFT_FORMATTED := Package.swift $(shell find Sources Tests -name '*.swift' -not -path 'Sources/InspectProtos/*' -not -name 'OpenAPIDocument.swift' -not -name 'WebAssets.swift')
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
	@python3 scripts/generate-openapi.py --check
	@python3 scripts/embed-web.py --check

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

# Starts Inspect in the background, runs the demo session end to end, and leaves Inspect running.
demo: build
	@bin="$$($(SWIFT) build --show-bin-path)"; \
	if ! "$$bin/inspect" status --data-dir "$(DATA_DIR)" >/dev/null 2>&1; then \
	  "$$bin/inspect" up --detach --data-dir "$(DATA_DIR)" || exit 1; \
	fi; \
	"$$bin/inspect" demo --data-dir "$(DATA_DIR)" || exit 1; \
	echo ""; \
	echo "make demo: Inspect is still running. Stop it with: make stop  (or: $$bin/inspect down --data-dir $(DATA_DIR))"

stop:
	@"$$($(SWIFT) build --show-bin-path)/inspect" down --data-dir "$(DATA_DIR)"
