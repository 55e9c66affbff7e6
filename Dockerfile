# One image for the api and the worker; restic and the PostgreSQL client are inside because
# the worker runs them for real.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends restic postgresql-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY activities activities
COPY adapters adapters
COPY cli cli
COPY core core
COPY db db
COPY devstack devstack
COPY migrations migrations
COPY repository repository
COPY schedules schedules
COPY workflows workflows
COPY worker worker
RUN pip install --no-cache-dir .

RUN useradd --system --uid 10001 cairn
USER cairn
ENV CAIRN_API_HOST=0.0.0.0
EXPOSE 8000
CMD ["cairn", "api"]
