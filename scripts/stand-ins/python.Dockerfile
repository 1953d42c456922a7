# Stand-in for the official python:3.11.x-slim-bookworm image (deploy/images.env: PYTHON_IMAGE), which no
# registry reachable from our build machines serves. Debian's Python 3.11 in a venv created at /usr/local,
# so `python`, pip and site-packages are where the official image has them and deploy/services.Dockerfile
# runs unchanged. Differs in Python's patch level and pip's version.
ARG BASE
FROM ${BASE}
# The host's extra CA certificates: HTTPS from these machines may pass a proxy that re-signs it.
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /usr/local
# pip trusts its own CA bundle, not the system's: point it (and Python's ssl) at the system's.
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
