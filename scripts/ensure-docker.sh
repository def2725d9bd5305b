#!/usr/bin/env bash
# Make sure a Docker engine answers, and print nothing else on success.
#
# - An engine that already answers (Docker Desktop, a system dockerd, a remote DOCKER_HOST) is used as is.
# - On Debian/Ubuntu without one, and only as root, install docker.io and start dockerd detached, with
#   published ports bound to 127.0.0.1 so nothing this project starts is reachable from the network.
# - Anything else: one line saying what to do, exit 1.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_answers() {
  # Debian's client when present: the newer client on some PATHs talks to the same socket but lacks buildx.
  local client=docker
  [ -x /usr/bin/docker ] && client=/usr/bin/docker
  timeout 10 "$client" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

engine_answers && exit 0

if [ -n "${DOCKER_HOST:-}" ]; then
  log "DOCKER_HOST=${DOCKER_HOST} does not answer; start that engine or unset DOCKER_HOST"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "no Docker engine is running and none can be installed here; start Docker (Desktop or dockerd) and retry"
    exit 1
  fi
  log "installing docker.io from the Debian archive"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker.io >/dev/null
fi

if [ "$(id -u)" != 0 ]; then
  log "dockerd is installed but not running and starting it needs root; run: sudo $0"
  exit 1
fi

log "starting dockerd (published ports bound to 127.0.0.1, log: /var/log/slipway-dockerd.log)"
# setsid: the daemon must outlive the shell (make, CI step) that started it.
setsid dockerd --ip 127.0.0.1 >/var/log/slipway-dockerd.log 2>&1 </dev/null &

for _ in $(seq 1 60); do
  engine_answers && exit 0
  sleep 1
done
log "dockerd did not answer within 60 s; see /var/log/slipway-dockerd.log"
exit 1
