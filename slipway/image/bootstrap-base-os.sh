#!/usr/bin/env bash
# The air-gapped path: build a Debian bookworm base image without pulling from any image registry.
#
# debootstrap fetches Debian packages from the same mirror apt uses on this machine, the result is imported
# as an image, and this host's CA bundle is installed into it so pip and apt inside the image trust the
# same TLS roots as the host (a corporate proxy's CA, for instance).
#
# usage: bootstrap-base-os.sh IMAGE_NAME
set -euo pipefail
image=${1:?usage: bootstrap-base-os.sh IMAGE_NAME}
log() { printf 'base-os: %s\n' "$*" >&2; }

if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  else
    log "debootstrap is not installed; install it (apt-get install debootstrap) or set BASE_IMAGE to an image you can pull"
    exit 1
  fi
fi

# The mirror apt already uses here (deb822 sources first, then the classic list); override with DEBIAN_MIRROR.
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

ca_bundle=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$ca_bundle" ] || { log "CA bundle $ca_bundle not readable; set HOST_CA_BUNDLE to this host's PEM bundle"; exit 1; }

root=$(mktemp -d /tmp/slipway-base-os.XXXXXX)
trap 'rm -rf "$root"' EXIT

log "debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { log "debootstrap failed (see $root.log)"; exit 1; }

install -m 0644 "$ca_bundle" "$root/usr/local/share/ca-certificates/host-ca-bundle.crt"
chroot "$root" update-ca-certificates >/dev/null 2>&1
# A small image: package lists and caches are not needed at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
printf 'deb %s bookworm main\n' "$mirror" >"$root/etc/apt/sources.list"

tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
rm -f "$root.log"
log "imported $image"
