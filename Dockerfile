# syntax=docker/dockerfile:1
# trainlab's trainer image: CPU PyTorch and the locked runtime dependencies, trainlab, a non-root user.
#   docker build -t trainlab --build-arg GIT_COMMIT="$(git rev-parse HEAD)" .
#   docker run --rm --env-file .env -v trainlab-work:/work trainlab              # the default experiment
#   docker run --rm --env-file .env -v trainlab-work:/work trainlab train seed=1
# docs/containers.md has the rest (compose stack, sweeps, a local wheel folder, Podman).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE}
RUN useradd --create-home --uid 1000 --user-group --shell /bin/sh trainlab \
    && mkdir /work \
    && chown trainlab:trainlab /work

# ---- dependencies: this layer is rebuilt only when a lock file (or the installer) changes. One stage:
# copying 1.5 GB out of a build stage costs Podman half a minute on every build, even a cached one
# torch==2.13.0+cpu: from PyTorch's CPU index, or (TORCH_INDEX="") from WHEELS, a wheel folder mounted at
# build time (podman build -v /opt/wheels:/opt/wheels:ro --build-arg WHEELS=/opt/wheels)
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG WHEELS=""
ARG PIP_CERT=""
COPY requirements-bootstrap.lock requirements-runtime.lock docker/install-deps.sh /tmp/deps/
RUN /tmp/deps/install-deps.sh /opt/venv /tmp/deps/requirements-runtime.lock /tmp/deps/requirements-bootstrap.lock \
    && rm -rf /tmp/deps
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg

# ---- the source: only these layers change from commit to commit
COPY pyproject.toml README.md /tmp/trainlab/
COPY src /tmp/trainlab/src
RUN pip install --quiet --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation /tmp/trainlab \
    && rm -rf /tmp/trainlab
COPY configs /opt/trainlab/configs
COPY docker/entrypoint.sh /usr/local/bin/trainlab-entrypoint

# the image keeps no .git folder: runs record the commit it was built from (GIT_DIRTY=true: built from a
# working tree with uncommitted changes, which trainlab reproduce then refuses to rebuild)
ARG GIT_COMMIT=""
ARG GIT_BRANCH=""
ARG GIT_DIRTY=""
# a step that runs with the arguments: Podman keys the cache of an ENV or LABEL step on its text, not on
# the values it expands, so without it a rebuild at a new commit kept the old commit
RUN printf 'commit %s\nbranch %s\ndirty %s\n' "$GIT_COMMIT" "$GIT_BRANCH" "$GIT_DIRTY" > /opt/trainlab/revision
ENV TRAINLAB_GIT_COMMIT=$GIT_COMMIT \
    TRAINLAB_GIT_BRANCH=$GIT_BRANCH \
    TRAINLAB_GIT_DIRTY=$GIT_DIRTY
LABEL org.opencontainers.image.title="trainlab" \
      org.opencontainers.image.description="Train image classifiers and manage the experiments around them" \
      org.opencontainers.image.revision=$GIT_COMMIT

# numeric, so Kubernetes runAsNonRoot and a host without this user can check it
USER 1000:1000
WORKDIR /work
VOLUME ["/work"]
ENTRYPOINT ["/usr/local/bin/trainlab-entrypoint"]
CMD ["trainlab", "all", "--config", "/opt/trainlab/configs/quickstart.yaml"]
