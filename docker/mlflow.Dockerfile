# syntax=docker/dockerfile:1
# The MLflow tracking server of trainlab's compose stack: MLflow with its PostgreSQL driver (psycopg)
# already installed, so the stack starts with no network (MLflow's own image installs its driver with pip
# at every start). Versions and hashes: docker/mlflow-server.lock (MLflow as in requirements.lock).
#   docker build -f docker/mlflow.Dockerfile -t trainlab-mlflow .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE}
RUN useradd --create-home --uid 1000 --user-group --shell /bin/sh mlflow \
    && mkdir /mlartifacts \
    && chown mlflow:mlflow /mlartifacts
ARG PIP_CERT=""
COPY requirements-bootstrap.lock docker/mlflow-server.lock docker/install-deps.sh /tmp/deps/
RUN TORCH_INDEX="" /tmp/deps/install-deps.sh /opt/mlflow /tmp/deps/mlflow-server.lock /tmp/deps/requirements-bootstrap.lock \
    && rm -rf /tmp/deps
ENV PATH=/opt/mlflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /home/mlflow
VOLUME ["/mlartifacts"]
EXPOSE 5000
# the image has neither curl nor wget; Python asks the server's health endpoint
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=12 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
# the backend store comes from the environment (compose.yaml), out of `ps`: a PostgreSQL URI, e.g.
#   MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://mlflow:PASSWORD@postgres:5432/mlflow
ENTRYPOINT ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--serve-artifacts", "--artifacts-destination", "/mlartifacts"]
