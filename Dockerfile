# idaas-sync-exporter container image.
#
#   docker build -t idaas-sync-exporter .
#   docker run --rm --read-only -p 10151:10151 idaas-sync-exporter --demo
#
# Needs BuildKit (the default builder since Docker 23; `DOCKER_BUILDKIT=1` on older engines).
#
# Build arguments:
#   PYTHON_IMAGE  base image of both stages: any Debian-based image with python3 >= 3.11 and
#                 pip, by default the official slim Python image. deploy/test-image.sh builds a
#                 local one with debootstrap (Debian bookworm's python3 is 3.11) where no
#                 container registry can be reached.
#   VERSION, REVISION, CREATED  values of the OCI labels (deploy/test-image.sh fills them in
#                 from pyproject.toml and git).
#
# Behind a TLS-intercepting proxy, hand its CA bundle to pip as a BuildKit secret (it is never
# stored in a layer):  docker build --secret id=pip-cert,src=/path/to/ca-bundle.crt .
#
# The image runs as the numeric UID/GID 65532, never root, and writes only below
# /var/lib/idaas-sync-exporter (a volume), so the root filesystem can be mounted read-only.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# builder: turn the project and all of its dependencies into wheels
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter

# `pip wheel` builds in an isolated environment, so the base's own packages (and Debian's
# "externally managed" marker) do not matter here.
RUN --mount=type=secret,id=pip-cert \
    python3 -c "import sys; assert sys.version_info >= (3, 11), 'idaas-sync-exporter needs Python >= 3.11, the base image has ' + sys.version" \
    && if [ -s /run/secrets/pip-cert ]; then export PIP_CERT=/run/secrets/pip-cert; fi \
    && python3 -m pip wheel --no-cache-dir --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# final image: a virtual environment with the wheels installed, nothing else added
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# The wheels are bind-mounted from the builder for this one step, so they take no space in the
# image. The venv gets no pip of its own: the base's pip installs into it (pip --python).
RUN --mount=type=bind,from=builder,source=/wheels,target=/tmp/wheels \
    python3 -m venv --without-pip /opt/venv \
    && python3 -m pip --disable-pip-version-check --python /opt/venv/bin/python install \
        --no-cache-dir --no-index --find-links=/tmp/wheels /tmp/wheels/idaas_sync_exporter-*.whl \
    && groupadd --system --gid 65532 exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
        --home-dir /var/lib/idaas-sync-exporter --shell /usr/sbin/nologin exporter \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/idaas-sync-exporter \
    && /opt/venv/bin/idaas-sync-exporter --version

# Labels and their arguments come after the install step, so that a new revision reuses its
# cached layer.
ARG VERSION=0.1.0.dev0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG PYTHON_IMAGE

LABEL org.opencontainers.image.title="idaas-sync-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Alibaba Cloud IDaaS (EIAM) synchronization jobs" \
      org.opencontainers.image.url="https://github.com/idaas-sync-exporter/idaas-sync-exporter" \
      org.opencontainers.image.source="https://github.com/idaas-sync-exporter/idaas-sync-exporter" \
      org.opencontainers.image.documentation="https://github.com/idaas-sync-exporter/idaas-sync-exporter#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="idaas-sync-exporter developers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# Bytecode was compiled at install time; nothing is written at run time (read-only root FS).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    IDAAS_EXPORTER_STATE_FILE=/var/lib/idaas-sync-exporter/state.json \
    IDAAS_EXPORTER_WEB_LISTEN_ADDRESS=:10151

# Counters and tracked jobs survive restarts here. Without a mount Docker creates an anonymous
# volume, so even `--read-only` containers can write their state.
VOLUME ["/var/lib/idaas-sync-exporter"]
WORKDIR /var/lib/idaas-sync-exporter
USER 65532:65532
EXPOSE 10151

# No curl in slim images: Python asks /-/healthy (which never needs credentials) on the port of
# IDAAS_EXPORTER_WEB_LISTEN_ADDRESS; change the port with that variable, not with the flag.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; h, _, p = os.environ.get('IDAAS_EXPORTER_WEB_LISTEN_ADDRESS', ':10151').rpartition(':'); h = h.strip('[]'); h = '127.0.0.1' if h in ('', '0.0.0.0', '::') else h; h = '[' + h + ']' if ':' in h else h; u.urlopen('http://' + h + ':' + p + '/-/healthy', timeout=4)"]

ENTRYPOINT ["idaas-sync-exporter"]
CMD []
