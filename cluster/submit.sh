#!/usr/bin/env bash
# Submit an experiment script to a running Ray cluster as a job.
#   cluster/submit.sh experiments/loso_samm.py --data-root /mnt/datasets/SAMM
# RAY_ADDRESS     the cluster's dashboard (default http://127.0.0.1:8265, e.g. via `ray dashboard`)
# MER_RAY_STORAGE where results go (a folder on shared storage, s3://..., gs://...)
# RAY_AUTH_TOKEN  the cluster's token, when it runs with RAY_AUTH_MODE=token; without it, the
#                 token file Ray keeps (~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH) is used
#                 when there is one: a local `ray start --head` turns token authentication on
#                 whenever that file exists
# Extra `ray job submit` options go in RAY_SUBMIT_OPTS (e.g. "--no-wait").
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 || ! -f "$1" ]]; then
  echo "usage: cluster/submit.sh experiments/SCRIPT.py [script options]" >&2
  echo "       (the script must exist; see experiments/)" >&2
  exit 2
fi
script=$1; shift
storage=()
if [[ -n "${MER_RAY_STORAGE:-}" ]]; then storage=(--storage-path "$MER_RAY_STORAGE"); fi
runtime_env=()
if [[ "${MER_RAY_RUNTIME_ENV:-1}" == "1" ]]; then runtime_env=(--runtime-env cluster/runtime_env.yaml); fi
token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
if [[ -z "${RAY_AUTH_MODE:-}" && ( -n "${RAY_AUTH_TOKEN:-}" || -f "$token_file" ) ]]; then
  export RAY_AUTH_MODE=token
fi
# shellcheck disable=SC2086
exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --working-dir . \
  "${runtime_env[@]}" ${RAY_SUBMIT_OPTS:-} -- python "$script" "${storage[@]}" "$@"
