# Stand-in for prom/prometheus (deploy/images.env: PROMETHEUS_IMAGE): the binaries scripts/build-backends.sh
# builds, in the official image's layout: /bin/prometheus as the entrypoint, user nobody, data directory
# /prometheus owned by nobody as working directory and volume, busybox (wget) for compose's healthcheck.
ARG BASE
FROM ${BASE}
COPY prometheus promtool /bin/
RUN mkdir -p /etc/prometheus /prometheus \
 && printf 'scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ["localhost:9090"]\n' \
      >/etc/prometheus/prometheus.yml \
 && chown -R nobody:nobody /etc/prometheus /prometheus
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
