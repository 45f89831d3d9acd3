# batchlab: the web explorer (default target) and the calibration tool (target "calibrate").
#
#   docker build -t batchlab .                              # slim: simulator, store, web app (no torch)
#   docker run -p 127.0.0.1:8501:8501 -v batchlab-data:/data batchlab  # http://localhost:8501, this machine only
#   docker build --target calibrate -t batchlab-calibrate .  # + torch (CPU wheels) + transformers
#   docker build --target calibrate --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 ...
#   docker run --rm -v batchlab-data:/data batchlab-calibrate --model tiny --upload  # grid.csv in /data
#
# Dependencies come from requirements.lock (pinned; `make lock` refreshes it from pyproject.toml).
# Process 1 is tini, which passes signals on: `docker stop` sends SIGTERM, batchlab passes it to
# streamlit, and the container ends at once instead of being killed after the stop timeout.
# The calibrate target works in /data, so its default --out (grid.csv) lands on the volume.
#
# /data holds the SQLite results store and the workload cache (BATCHLAB_HOME); set
# BATCHLAB_DB_URL=postgresql://... to use a PostgreSQL store instead, and
# BATCHLAB_CLUSTERS="NAME=tls://HOST:8786" to offer Dask clusters to the Sweeps and Plan pages.
# The app binds 0.0.0.0 inside the container (--expose; it prints what that exposes): who can
# reach it is decided by -p. Publish on 127.0.0.1 as above; anything wider gives every page
# (runs, uploads, deletes) to anyone who can reach the port, with no login (README: Security model).

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BATCHLAB_HOME=/data \
    NUMBA_CACHE_DIR=/app/.numba-cache \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md __init__.py __main__.py cli.py ./
COPY core ./core
COPY workloads ./workloads
COPY calibration ./calibration
COPY store ./store
COPY webapp ./webapp
# editable: the app runs from /app, so webapp/.streamlit/config.toml (theme, limits) is used as is
# the continuous engine is compiled here, once, into NUMBA_CACHE_DIR (its first run would take tens of seconds)
RUN pip install --no-deps -e . \
 && pip check \
 && python -c "from batchlab.core.continuous_engine import warm_up; warm_up()" \
 && useradd --create-home --uid 1000 batchlab \
 && mkdir -p /data && chown batchlab:batchlab /data && chown -R batchlab:batchlab /app/.numba-cache
USER batchlab
VOLUME /data
ENTRYPOINT ["/usr/bin/tini", "--"]

FROM runtime AS calibrate
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
USER root
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
 && pip install "transformers>=4.45,<6"
USER batchlab
WORKDIR /data
ENTRYPOINT ["/usr/bin/tini", "--", "batchlab", "calibrate"]
CMD ["--help"]

# The default target (last stage): serve the web app.
FROM runtime AS app
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["batchlab", "app", "--host", "0.0.0.0", "--port", "8501", "--expose"]
