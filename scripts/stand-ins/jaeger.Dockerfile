# Stand-in for jaegertracing/jaeger v2 (deploy/images.env: JAEGER_IMAGE): the binary scripts/build-backends.sh
# builds, where the official image has it (/cmd/jaeger/jaeger-linux, the entrypoint), user 10001, /tmp
# (mode 1777) its only volume, busybox (wget) on PATH as Alpine's is for compose's healthcheck.
ARG BASE
FROM ${BASE}
COPY jaeger /cmd/jaeger/jaeger-linux
USER 10001
EXPOSE 4317 4318 16686 13133
VOLUME ["/tmp"]
ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]
