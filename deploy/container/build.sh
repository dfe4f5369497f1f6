#!/bin/sh
# Builds the server's container image with no base image (none can be pulled on our build
# machines): FROM scratch plus a release directory (deno task dist) and the shared libraries its
# deno binary links, found with ldd on this machine.
#
#   deploy/container/build.sh RELEASE_DIR [TAG] [more podman build options...]
#   PODMAN="podman --root /tmp/store" deploy/container/build.sh dist/bitnet-server-0.1.0-linux-x64
#
# buildah works the same way: PODMAN=buildah deploy/container/build.sh ... (buildah build ...).
set -eu
[ $# -ge 1 ] || { echo "usage: $0 RELEASE_DIR [TAG] [podman build options...]" >&2; exit 2; }
release=$(CDPATH='' cd -- "$1" && pwd -P)
tag=${2:-localhost/bitnet-server:latest}
[ $# -ge 2 ] && shift 2 || shift 1
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)
[ -x "$release/bin/deno" ] || { echo "$release is not a release directory (no bin/deno)" >&2; exit 2; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/bitnet-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/etc"
cp -a "$release" "$ctx/release"
# The dynamic loader and every library ldd lists (copied as files, symlinks resolved).
for lib in $(ldd "$release/bin/deno" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$ctx/rootfs${lib%/*}"
  cp -L "$lib" "$ctx/rootfs$lib"
done
echo 'bitnet:x:65532:65532:bitnet-server:/nonexistent:/sbin/nologin' >"$ctx/rootfs/etc/passwd"
echo 'bitnet:x:65532:' >"$ctx/rootfs/etc/group"
cp "$here/Containerfile" "$ctx/Containerfile"
# --format docker keeps the HEALTHCHECK (the OCI image format has no health check).
${PODMAN:-podman} build --format docker -f "$ctx/Containerfile" -t "$tag" "$@" "$ctx"
