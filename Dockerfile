# syntax=docker/dockerfile:1
# The app image: WeChat webhook server, admin API and Rasa's action endpoint (`scrm serve`).
# Rasa itself does not go in here (it needs its own Python stack): docker-compose.yml runs
# the official rasa/rasa image beside this one.

# ---- build: a venv holding the app and its runtime dependencies only ----------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# requirements/app.lock is a full `pip freeze` (dev tools too); as a constraints file it only
# pins versions, so only the runtime dependencies declared in pyproject.toml get installed.
# README.md* : pyproject names a readme; the glob copies it when it exists and is no error
# when it does not (pyproject.toml always matches).
COPY pyproject.toml README.md* ./
COPY requirements/app.lock requirements/app.lock
COPY bot/ bot/
COPY store/ store/
COPY webhooks/ webhooks/
COPY scrm/ scrm/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c requirements/app.lock . \
 && pip check

# ---- runtime --------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 scrm \
 && useradd --system --uid 10001 --gid scrm --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin scrm
COPY --from=build /opt/venv /opt/venv
# The packages (bot, store, webhooks, scrm) live in the venv. The working directory holds
# what the app reads by relative path: config.yml, flows/ (app.flows_dir), nlu/ (the dialogue
# data this image was built with) and deploy/ (config.compose.yml, see docker-compose.yml).
# Owned by root and read-only to the app user: the app writes nothing here.
WORKDIR /app
COPY config.yml ./
COPY flows/ flows/
COPY nlu/ nlu/
COPY deploy/ deploy/
USER 10001:10001
EXPOSE 8080
# /healthz is 200 only while MongoDB, Redis and Rasa all answer (503 otherwise). slim has no
# curl, hence Python; urlopen raises on 503, which exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["scrm", "serve"]
