# syntax=docker/dockerfile:1
# The auto-engagement image: one image for the API (web), the daily run, the log pruning and migrations; the first
# argument picks the role (deploy/image/entrypoint.sh). Build steps live in deploy/image/build.sh, which CI also runs
# in a fresh venv (tests/deploy/test_image_scripts.py), so they are tested even where no container engine runs.
#
#   docker build -t registry.example.com/auto-engagement:$(git rev-parse --short HEAD) .
#   docker run --rm -e SECRET_KEY=... -e DATABASE_URL=... -e ALLOWED_HOSTS=... -p 8000:8000 IMAGE web
#
# Credentials are never baked in: they come from the environment and from mounted files at run time.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the venv (runtime dependencies + the project, no dev extras) and the collected static files ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY . /src
# The venv lives at the same path in both stages: its scripts' shebangs name it.
RUN sh deploy/image/build.sh /opt/venv

# --- final: no build tools, no sources beyond the project, a non-root user ---
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=false \
    APP_DIR=/app
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it (the manifests use 10001 too).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Owned by root and not writable by the app user: the container's root filesystem can be mounted read-only.
COPY . /app
COPY --from=builder /src/staticfiles /app/staticfiles
RUN python -m compileall -q /app \
    && chmod 0755 /app/deploy/image/entrypoint.sh
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/bin/sh", "/app/deploy/image/entrypoint.sh"]
CMD ["web"]
