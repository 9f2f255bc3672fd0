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
    openipmi ipmitool   # ipmi_sim, the BMC of the bare-metal rig
    qemu-system-x86 ipxe-qemu ipxe   # the rig's machines, their PXE ROMs, iPXE binaries for TFTP
    busybox-static cpio iproute2     # the rig's initramfs and its network namespace
    chromium            # the status page's browser tests (Playwright drives it; no download)
    curl jq openssl     # docs/service.md's curl examples run against the demo
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
updated=""
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    updated=1
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The bare-metal rig boots a real Debian kernel; keep its .deb in a cache once.
RIG_CACHE=${TALPROV_RIG_CACHE:-/var/cache/talprov-rig}
if ! ls "$RIG_CACHE"/linux-image-*.deb >/dev/null 2>&1; then
    [ -n "$updated" ] || $SUDO apt-get update -qq
    $SUDO mkdir -p "$RIG_CACHE"
    kernel=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image/{print $2; exit}')
    (cd "$RIG_CACHE" && $SUDO apt-get download "$kernel")
fi
