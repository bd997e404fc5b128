#!/usr/bin/env bash
# Submit a tunekit search to a running Ray cluster as a Ray job:
#
#   RAY_ADDRESS=http://127.0.0.1:8265 cluster/submit.sh mnist1d --storage s3://bucket/tunekit [--set …]
#   RAY_ADDRESS=… cluster/submit.sh --resume s3://bucket/tunekit/NAME     # continue an interrupted search
#
# The current folder (your presets, YAML files; minus .gitignore'd files and the tunekit package itself)
# is uploaded as the job's working dir; tunekit runs as installed on the nodes (cluster/README.md), so
# an uploaded copy never shadows half of it. Extra `ray job submit` options go in $RAY_JOB_OPTS
# (e.g. "--no-wait").
set -euo pipefail

: "${RAY_ADDRESS:=http://127.0.0.1:8265}"
export RAY_ADDRESS
python="${TUNEKIT_PYTHON:-python}"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 PRESET [tunekit search options…] | --resume SEARCH_DIR" >&2
  exit 2
fi
if [[ "$1" == "--resume" ]]; then
  shift
  command=(resume "$@" --address auto)
else
  command=(search "$@" --address auto)
fi

# shellcheck disable=SC2086  # RAY_JOB_OPTS is a list of options
runtime_env='{"working_dir": ".", "excludes": ["tunekit/", "search_spaces", ".venv/", ".git/", "runs/"]}'
exec ray job submit --runtime-env-json "$runtime_env" ${RAY_JOB_OPTS:-} -- "$python" -m tunekit.cli "${command[@]}"
