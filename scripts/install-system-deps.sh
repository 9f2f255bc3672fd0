#!/usr/bin/env bash
# Debian packages the tests' emulators need. Installs only what is missing, so a
# second run costs nothing. Needs root (CI runs as root) or sudo.
set -euo pipefail

PACKAGES=(
    postgresql          # the shared store's tests run a real server (initdb + pg_ctl)
    qemu-utils          # qemu-img checks the fake factory's VMDK
    genisoimage         # isoinfo reads the fake factory's ISO
    golang-go           # builds vcsim (tests/emulators/vcsim/build.sh)
    golang-github-vmware-govmomi-dev   # vcsim's simulator sources
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
