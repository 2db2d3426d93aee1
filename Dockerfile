# syntax=docker/dockerfile:1
# webhook-operator container image.
#   docker build -t ghcr.io/openplatform/webhook-operator:0.1.0 .
# Two stages: the builder makes the wheel and installs it with its dependencies into a virtual
# environment; the final image gets that environment only (no pip, no compilers, no sources)
# and runs as an unprivileged numeric user, as deploy/ expects (runAsNonRoot, UID 65532).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore). operator/webhook_operator/crds is a
# symlink to ../../crds, so the CRDs are copied too: the wheel ships them as package data.
COPY pyproject.toml README.md ./
COPY crds/ crds/
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install /wheels/*.whl \
 && /opt/venv/bin/python -c "import webhook_operator, importlib.resources as r; \
assert r.files('webhook_operator').joinpath('crds/webhookevents.yaml').is_file(); \
import importlib.util as u; assert u.find_spec('kmock') is None, 'the demo extra must stay out of the image'"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="webhook-operator" \
      org.opencontainers.image.description="Kubernetes-native webhook delivery (WebhookSubscription, WebhookEvent)" \
      org.opencontainers.image.source="https://github.com/openplatform/webhook-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own pip/setuptools/wheel are not needed at run time.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
# Prometheus metrics and /healthz, when started with --metrics-port 8080 --health-port 8081.
EXPOSE 8080 8081
ENTRYPOINT ["webhook-operator", "run"]
