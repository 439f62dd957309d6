#!/usr/bin/env bash
# Stage 1 of `make firmware`: the image's root file system as a directory, from Debian 12
# packages (mmdebstrap) plus the appliance's venv built inside it by the image's own Python.
#   firmware/build-rootfs.sh WHEEL CONSTRAINTS
# Output: firmware/build/rootfs/ and firmware/build/python-report.json (pip's install report).
# Skipped when the package list, the hooks, the wheel's contents and the constraints are
# unchanged since the last build (firmware/build/rootfs.stamp): rebuilding the disk from a
# cached rootfs takes a minute, mmdebstrap several.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$here/build
wheel=$(realpath "$1")
constraints=$(realpath "$2")

# The appliance's run-time system: no recommends, no PulseAudio/PipeWire (ALSA direct through
# PortAudio), no SSH. e2fsprogs: fsck of the state partition; systemd-boot-efi: the boot loader
# copied onto the ESP; dbus: systemctl/networkd talk over it.
packages=(
  systemd-sysv udev dbus kmod e2fsprogs
  linux-image-amd64 initramfs-tools systemd-boot-efi
  python3 python3-venv openssl libportaudio2
)
mirrors=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)

stamp=$( {
  printf '%s\n' "${packages[@]}" "${mirrors[@]}"
  cat "$here/build-rootfs.sh" "$here"/hooks/*
  unzip -p "$wheel" '*.dist-info/RECORD'  # per-file hashes: the wheel's content, not its zip timestamps
  cat "$constraints"
} | sha256sum | cut -d' ' -f1)
if [ -f "$build/rootfs.stamp" ] && [ "$(cat "$build/rootfs.stamp")" = "$stamp" ] && [ -d "$build/rootfs" ]; then
  echo "rootfs: up to date ($build/rootfs)"
  exit 0
fi

rm -rf "$build/rootfs" "$build/rootfs.stamp"
mkdir -p "$build/apt-cache" "$build/pip-cache"
# Debian packages and wheels are cached between builds (apt-cache/, pip-cache/).
mmdebstrap --mode=root --variant=essential --arch=amd64 \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='Apt::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/ "$1"/etc/initramfs-tools/hooks' \
  --setup-hook="sync-in $build/apt-cache /var/cache/apt/archives/" \
  --setup-hook="install -m 0755 $here/hooks/initramfs-erofs \"\$1\"/etc/initramfs-tools/hooks/appliance-erofs" \
  --customize-hook="sync-out /var/cache/apt/archives $build/apt-cache" \
  --customize-hook="$here/hooks/venv.sh \"\$1\" $wheel $constraints $build" \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
  bookworm "$build/rootfs" "${mirrors[@]}"
echo "$stamp" > "$build/rootfs.stamp"
