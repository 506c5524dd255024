# syntax=docker/dockerfile:1
#
# One image for all of Inspect: the five service binaries and the `inspect` CLI.
# compose.yaml runs one container per service from it, choosing the binary with `command:`.
#
#   docker build -t inspect:local .
#   docker run --rm inspect:local SessionService --host 0.0.0.0

# ---------------------------------------------------------------------------------------------
# Build: release binaries with the Swift runtime linked in statically.
# ---------------------------------------------------------------------------------------------
FROM swift:6.3-bookworm AS build

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends libsqlite3-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, so that editing a source file does not fetch them again.
# (Package.resolved is optional: the bracket glob copies it only when it exists.)
COPY Package.swift Package.resolve[d] ./
RUN swift package resolve

# Then the sources (test targets are declared in the manifest, so their folders must exist).
COPY Sources ./Sources
COPY Tests ./Tests
COPY protos ./protos

RUN swift build -c release --static-swift-stdlib \
    && bin="$(swift build -c release --static-swift-stdlib --show-bin-path)" \
    && mkdir -p /staging \
    && for binary in inspect Gateway SessionService SandboxService ModelRouter RepoClassifier inspect-sandbox-init; do \
         install -m 0755 "$bin/$binary" /staging/; \
       done

# ---------------------------------------------------------------------------------------------
# Runtime: a small Debian with what the services call at run time.
#   libsqlite3-0            SessionService, RepoClassifier (GRDB)
#   git                     SandboxService (mirrors, sync, push)
#   bubblewrap              SandboxService (sandbox isolation)
#   python3                 the demo repository's tests run inside sandboxes
#   ripgrep, chromium       the agent's search and screenshot tools (sandboxes see this /usr)
#   curl / libcurl4         compose health checks; FoundationNetworking (URLSession in the CLI)
#   ca-certificates, tzdata TLS to model providers and GitHub; time zones
#   tini                    PID 1: forwards signals, reaps sandbox processes
# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
         libsqlite3-0 git bubblewrap ca-certificates python3 curl libcurl4 libxml2 tzdata tini \
         ripgrep chromium \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /staging/ /usr/local/bin/

ENV INSPECT_DATA_DIR=/var/lib/inspect \
    INSPECT_BIN_DIR=/usr/local/bin \
    INSPECT_LOG_FORMAT=json \
    INSPECT_LOG_LEVEL=info

RUN mkdir -p /var/lib/inspect
VOLUME ["/var/lib/inspect"]
WORKDIR /var/lib/inspect

# Gateway HTTP and gRPC; the internal services' gRPC and admin ports.
EXPOSE 8080 50050 50051 50052 50053 50054 51051 51052 51053 51054

ENTRYPOINT ["/usr/bin/tini", "--"]
# Containers bind every interface; pick another service with e.g. `SessionService --host 0.0.0.0`.
CMD ["Gateway", "--host", "0.0.0.0"]
