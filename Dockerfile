# One image with every binary: fpindex-proxy and fpindex-updater (the workers),
# fpindex-controller, and the migration tools fpindex-import, fpindex-verify and fpindex-backup
# (run them with `kubectl run`, or from a Job).   docker build -t fpindex-cluster:latest .
FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnats-dev libcurl4-openssl-dev libyaml-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
# Every target of the manifest must exist, test targets included.
COPY Tests Tests
# SwiftPM builds one product per invocation; the later ones reuse the first's work.
RUN for product in fpindex-proxy fpindex-updater fpindex-controller fpindex-import fpindex-verify fpindex-backup; do \
        swift build -c release --static-swift-stdlib --product "$product" || exit 1; \
    done
RUN mkdir /out && cd .build/release \
    && cp fpindex-proxy fpindex-updater fpindex-controller fpindex-import fpindex-verify fpindex-backup /out/

FROM debian:bookworm-slim
# Only the C libraries the binaries link, and CA certificates for TLS to NATS and the API server.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnats3.4 libcurl4 libyaml-0-2 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT []
CMD ["fpindex-proxy", "--help"]
