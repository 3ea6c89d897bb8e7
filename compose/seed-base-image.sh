#!/usr/bin/env bash
# Build debian:bookworm-slim locally with debootstrap, for machines that reach a Debian mirror but
# no container registry. The Dockerfiles keep a plain `FROM debian:bookworm-slim`, which machines
# with a registry simply pull. Called by prepare-host.sh only when the image is absent.
set -euo pipefail

mirror=${KIT_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The first Debian main-archive URI in this machine's apt sources (deb822 or one-line format).
  mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
    | grep -v security | head -n1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null \
  || { echo "seed-base-image: debootstrap from $mirror failed" >&2; exit 1; }

# Same apt sources as the official image (main archive, updates, security).
rm -f "$rootfs/etc/apt/sources.list"
security=${mirror%/debian}/debian-security
case "$mirror" in *deb.debian.org*) security=http://deb.debian.org/debian-security ;; esac
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# Trust the build host's extra CA certificates (TLS-intercepting proxies): they take effect once
# an image installs ca-certificates, and pip is told to use the system bundle.
if [ "${KIT_TRUST_HOST_CA:-yes}" = yes ] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  echo "seed-base-image: trusting $(ls /usr/local/share/ca-certificates/*.crt | wc -l) extra CA certificate(s) from this host"
fi

rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
echo "seed-base-image: debian:bookworm-slim imported from $mirror"
