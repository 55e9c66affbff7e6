# The one cairn image: the API, the worker and the migrations run it (docker-compose.yml builds
# it once). restic and the PostgreSQL client are inside because the worker runs them for real;
# Debian 13's client (17) dumps and restores servers from 9.2 to 17.
FROM python:3.11-slim-trixie

RUN apt-get update \
    && apt-get install -y --no-install-recommends restic postgresql-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
# one line per package of [tool.setuptools.packages.find] (tests/unit/test_dockerfile.py)
COPY activities activities
COPY adapters adapters
COPY api api
COPY cli cli
COPY contracts contracts
COPY core core
COPY db db
COPY devstack devstack
COPY migrations migrations
COPY repository repository
COPY schedules schedules
COPY services services
COPY workflows workflows
COPY worker worker
RUN pip install --no-cache-dir . && rm -rf build

# A non-root user, owner of the storage mount point: a named volume mounted there starts as a
# copy of this folder, owner included, so the worker can write its repositories.
# User and group 10001 (what the Kubernetes API fake takes an image's user to be).
RUN groupadd --system --gid 10001 cairn \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cairn \
        --shell /usr/sbin/nologin cairn \
    && mkdir -p /var/lib/cairn/storages \
    && chown -R 10001:10001 /var/lib/cairn
USER 10001
ENV CAIRN_API_HOST=0.0.0.0 \
    CAIRN_STORAGE_MOUNT_ROOT=/var/lib/cairn/storages
EXPOSE 8000
CMD ["cairn", "api"]
