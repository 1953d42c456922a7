# The three services (gateway, orchestrator, inference) as one image; the command picks the service:
#   docker build -f deploy/services.Dockerfile -t llm-telemetry/services:0.1.0 .      (context: the repo)
#   docker run llm-telemetry/services:0.1.0 services.orchestrator
# deploy/compose.yaml and deploy/helm/llm-telemetry run it with the command of each service; the base
# image's tag is pinned in deploy/images.env (PYTHON_IMAGE), which compose passes as a build argument.
#
# Build stage: the project and its exactly pinned dependencies (pyproject.toml) installed into /install,
# with the gRPC code generated from services/proto (it is built, never committed). Runtime stage: the
# same slim image, that tree, and an unprivileged user; no compiler, no pip cache, no tests.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# grpcio-tools, at the version pyproject.toml's dev extra pins, in a venv of its own and used only here:
# installed into the base interpreter, what it brings (protobuf, typing-extensions) counted as "already
# satisfied" for the installs below, was left out of /install, and the image failed to start
# (ModuleNotFoundError). --ignore-installed: /install gets every dependency, whatever the base has.
RUN python -m venv /tools && /tools/bin/pip install "grpcio-tools==1.85.1"
# The pinned dependencies in a layer of their own, before the code: a code change rebuilds from the COPY
# below, in seconds, instead of downloading every dependency again.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      >requirements.txt \
 && python -m pip install --prefix=/install --ignore-installed -r requirements.txt
COPY telemetry/ telemetry/
COPY services/ services/
RUN /tools/bin/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. services/proto/inference.proto \
 && python -m pip install --prefix=/install --ignore-installed --no-deps .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# A fixed uid/gid, so Kubernetes' runAsNonRoot can check it (a user name alone cannot be checked).
RUN groupadd --system --gid 10001 llm && useradd --system --uid 10001 --gid llm --no-create-home llm
USER 10001:10001
WORKDIR /tmp
# gateway HTTP, orchestrator HTTP, inference gRPC, inference /health + /ready (+ /metrics in pull mode).
EXPOSE 8080 8081 50051 8082
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
