#!/usr/bin/env bash
# Build tests/emulators/vcsim/bin/vcsim: govmomi's vCenter simulator from Debian's
# golang-github-vmware-govmomi-dev (0.24.2), our main.go, and the *.patch files here
# applied to a copy of the Debian sources (see README.md for why).
#
# Installs golang-go and golang-github-vmware-govmomi-dev with apt-get when they are
# missing (needs root or sudo). Reuses bin/vcsim when bin/vcsim.hash matches the
# inputs (main.go, the patches, the Debian package version, the Go version).
# Prints the binary's path on its last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN_DIR="$HERE/bin"
BINARY="$BIN_DIR/vcsim"
GOCODE=/usr/share/gocode
PACKAGES=(golang-go golang-github-vmware-govmomi-dev)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

inputs_hash() {
    {
        sha256sum "$HERE/main.go" "$HERE"/*.patch | cut -d' ' -f1
        dpkg-query -W -f='${Version}\n' golang-github-vmware-govmomi-dev
        go version
    } | sha256sum | cut -d' ' -f1
}

wanted="$(inputs_hash)"
if [ -x "$BINARY" ] && [ "$(cat "$BINARY.hash" 2>/dev/null)" = "$wanted" ]; then
    echo "$BINARY"
    exit 0
fi

mkdir -p "$BIN_DIR"
work="$(mktemp -d "$BIN_DIR/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A private GOPATH whose govmomi is a patched copy; every other dependency
# (and the rest of govmomi's own imports) still comes from /usr/share/gocode.
mkdir -p "$work/gopath/src/github.com/vmware" "$work/gopath/src/talprov-vcsim"
cp -a "$GOCODE/src/github.com/vmware/govmomi" "$work/gopath/src/github.com/vmware/govmomi"
for fix in "$HERE"/*.patch; do
    patch --quiet -p1 -d "$work/gopath/src/github.com/vmware/govmomi" < "$fix"
done
cp "$HERE/main.go" "$work/gopath/src/talprov-vcsim/main.go"

(
    cd "$work/gopath/src/talprov-vcsim"
    GO111MODULE=off GOPATH="$work/gopath:$GOCODE" GOCACHE="$BIN_DIR/.gocache" \
        go build -o "$work/vcsim" . >&2
)
mv "$work/vcsim" "$BINARY"
echo "$wanted" > "$BINARY.hash"
echo "$BINARY"
