#!/bin/sh
# Creates the virtual environment VENV and installs LOCK into it, every file checked against the lock's
# hashes. uv does the installing (itself pinned by hash in requirements-bootstrap.lock): minutes faster
# than pip on two cores. Used by both Dockerfiles for their dependency layer:
#   install-deps.sh VENV LOCK BOOTSTRAP_LOCK
# Build arguments it reads: TORCH_INDEX (PyTorch's CPU index, for torch==2.13.0+cpu; empty: not used),
# WHEELS (a folder of wheels mounted at build time, searched first) and PIP_CERT (a CA bundle for a
# proxy that inspects TLS: pip reads it, uv is given it as SSL_CERT_FILE).
set -eu
venv=$1 lock=$2 bootstrap=$3

if [ -n "${PIP_CERT:-}" ]; then
  SSL_CERT_FILE=$PIP_CERT
  export SSL_CERT_FILE
fi
set --
if [ -n "${WHEELS:-}" ]; then set -- "$@" --find-links "$WHEELS"; fi
# every file is hash-checked, so taking the best match across indexes cannot substitute a package;
# uv's default (the first index that has the name) would look for numpy only on PyTorch's index
if [ -n "${TORCH_INDEX:-}" ]; then set -- "$@" --extra-index-url "$TORCH_INDEX" --index-strategy unsafe-best-match; fi

python3 -m venv /tmp/uv
/tmp/uv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r "$bootstrap"
python3 -m venv "$venv"
# bytecode compiled now: the image runs with PYTHONDONTWRITEBYTECODE, so every start would compile again
/tmp/uv/bin/uv pip install --python "$venv/bin/python" --no-cache --no-deps --require-hashes --compile-bytecode \
  --quiet "$@" -r "$lock"
rm -rf /tmp/uv
# what the images never run: the packages' own test suites (pandas, scipy, sympy, ...: about 250 MB with
# their bytecode), torch's C++ test binaries and headers (for compiling extensions; the image has no compiler)
find "$venv" -type d -name tests -prune -exec rm -rf {} +
rm -rf "$venv"/lib/python3*/site-packages/torch/test "$venv"/lib/python3*/site-packages/torch/include
