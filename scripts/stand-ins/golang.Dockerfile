# Stand-in for the official golang:1.26-bookworm image (deploy/images.env: GOLANG_IMAGE): Debian with git
# and gcc, and the host's Go toolchain at /usr/local/go, GOPATH=/go, as the official image lays them out.
ARG BASE
FROM ${BASE}
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
COPY go/ /usr/local/go/
# GONOSUMDB: the module mirror our machines reach lacks checksum-database entries for the Collector's
# contrib modules (scripts/build-backends.sh narrows it the same way); their go.sum still verifies them.
ENV GOPATH=/go GOTOOLCHAIN=local \
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GONOSUMDB=github.com/open-telemetry/opentelemetry-collector-contrib
WORKDIR /go
