# Stand-in for prom/alertmanager (deploy/images.env: ALERTMANAGER_IMAGE): the binary scripts/build-backends.sh
# builds, in the official image's layout: /bin/alertmanager as the entrypoint, user nobody, data directory
# /alertmanager owned by nobody as working directory and volume, busybox (wget) for compose's healthcheck.
ARG BASE
FROM ${BASE}
COPY alertmanager /bin/
RUN mkdir -p /etc/alertmanager /alertmanager \
 && printf 'route:\n  receiver: default\nreceivers:\n  - name: default\n' >/etc/alertmanager/alertmanager.yml \
 && chown -R nobody:nobody /etc/alertmanager /alertmanager
USER nobody
EXPOSE 9093
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
