#!/bin/sh
# The trainer image's entrypoint. It says how this container will use W&B, then becomes the command
# (exec), so Ctrl-C and `docker stop` (SIGINT / SIGTERM) reach trainlab itself, which marks the run
# killed and leaves it resumable.
#
# WANDB_API_KEY comes from the environment: `docker run --env-file .env`, or compose's env_file. With a
# key, wandb logs in with it when the run starts (online, unless WANDB_MODE says otherwise); without one,
# runs are kept offline under ./wandb. The key is never printed, and never written to a file: `wandb
# login` would copy it into ~/.netrc, where a mounted home folder would keep it.
set -eu

say() { echo "trainlab-entrypoint: $*" >&2; }

mode=$(printf '%s' "${WANDB_MODE:-}" | tr '[:upper:]' '[:lower:]')
if [ -n "${WANDB_API_KEY:-}" ]; then
  case $mode in
    offline | dryrun | disabled) say "W&B key found (not shown), but WANDB_MODE=$mode: runs are not sent to W&B" ;;
    *) say "W&B key found (not shown): runs are mirrored to W&B online (if W&B cannot be reached, kept offline under ./wandb)" ;;
  esac
else
  say "no WANDB_API_KEY: W&B runs are kept offline under ./wandb (upload later with: wandb sync wandb/offline-run-*)"
fi

# `docker run IMAGE train ...` means `trainlab train ...`; a program's name (trainlab, bash) runs as given
if [ $# -eq 0 ]; then
  set -- trainlab --help
elif [ "${1#-}" != "$1" ] || ! command -v "$1" >/dev/null 2>&1; then
  set -- trainlab "$@"
fi
exec "$@"
