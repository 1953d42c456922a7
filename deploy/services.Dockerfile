# The three services (gateway, orchestrator, inference) as one image; the command picks the service:
#   docker build -f deploy/services.Dockerfile -t llm-telemetry/services:0.2.0 .      (context: the repo)
#   docker run llm-telemetry/services:0.2.0 services.orchestrator
# deploy/compose.yaml and deploy/helm/llm-telemetry run it with the command of each service; the base
# image's tag is pinned in deploy/versions.env (PYTHON_IMAGE), which compose passes as a build argument.
#
# Build stage: the library (the wheel pyproject.toml builds) and the services' exactly pinned dependencies
# (the library's own plus its `services` dependency group) installed into /install, and the services'
# source with the gRPC code generated from services/proto (built, never committed). The services run from
# /app, not from site-packages: they are the demo, not part of the library's wheel. Runtime stage: the
# same slim image, those trees, and an unprivileged user; no compiler, no pip cache, no tests.
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
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
print(*p['project']['dependencies'], *p['dependency-groups']['services'], sep='\n')" >requirements.txt \
 && python -m pip install --prefix=/install --ignore-installed -r requirements.txt
COPY telemetry/ telemetry/
COPY services/ services/
RUN /tools/bin/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. services/proto/inference.proto \
 && python -m pip install --prefix=/install --ignore-installed --no-deps . \
 && mkdir /app && cp -r services /app/

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app
COPY --from=build /install /usr/local
COPY --from=build /app /app
# A fixed uid/gid, so Kubernetes' runAsNonRoot can check it (a user name alone cannot be checked).
RUN groupadd --system --gid 10001 llm && useradd --system --uid 10001 --gid llm --no-create-home llm
USER 10001:10001
WORKDIR /app
# gateway HTTP, orchestrator HTTP, inference gRPC, inference /health + /ready (+ /metrics in pull mode).
EXPOSE 8080 8081 50051 8082
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
