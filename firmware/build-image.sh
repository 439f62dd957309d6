#!/usr/bin/env bash
# Stage 2 of `make firmware`: configure the root file system built by build-rootfs.sh,
# write the software bill of materials, and assemble a bootable GPT disk image without
# mounting anything:
#   1 ESP   (FAT32, mkfs.vfat + mtools): systemd-boot, the kernel and initrd
#   2 root  (EROFS, lz4hc): everything but /var and /boot; read-only by construction
#   3 var   (ext4, mkfs.ext4 -d): /var, the only writable, persistent file system;
#           first boot provisions the TLS key, certificate and token into /var/lib/appliance
# Output in firmware/build/: appliance.raw (sparse), appliance.packages.tsv,
# appliance.python-lock.txt, appliance.python-report.json, appliance.json (identity, sizes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build=$here/build
root=$build/rootfs
work=$build/parts
ESP_MIB=128
VAR_MIB=1024

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$repo/pyproject.toml")
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
esp_uuid=$(cat /proc/sys/kernel/random/uuid)
root_uuid=$(cat /proc/sys/kernel/random/uuid)
var_uuid=$(cat /proc/sys/kernel/random/uuid)

# --- 1. configure the root (idempotent: the cached rootfs is reconfigured on every build) ---
make -C "$repo" --no-print-directory --quiet install-files DESTDIR="$root" > /dev/null
python3 "$here/image_config.py" "$repo/systemd/appliance.toml" > "$root/etc/appliance/appliance.toml"
cp -r --preserve=mode "$here/overlay/." "$root/"
# Users and ownership now: at run time /etc is read-only.
systemd-sysusers --root="$root"
systemd-tmpfiles --root="$root" --create "$root/etc/tmpfiles.d/appliance.conf"
systemctl --root="$root" --quiet enable appliance.service appliance-provision.service systemd-networkd.service
cat > "$root/etc/fstab" <<FSTAB
# The root is EROFS, read-only; /var is the writable state partition; /tmp is in memory.
PARTUUID=$root_uuid  /     erofs  ro                          0 0
PARTUUID=$var_uuid   /var  ext4   rw,nosuid,nodev,noatime      0 2
tmpfs                /tmp  tmpfs  rw,nosuid,nodev,mode=1777    0 0
FSTAB
# Image identity (os-release(5) IMAGE_ID, IMAGE_VERSION, BUILD_ID = the build's UTC time).
rm -f "$root/etc/os-release"
{ grep -v -E '^(IMAGE_ID|IMAGE_VERSION|BUILD_ID)=' "$root/usr/lib/os-release"
  echo "IMAGE_ID=appliance"
  echo "IMAGE_VERSION=$version"
  echo "BUILD_ID=$build_date"
} > "$root/etc/os-release"
# Empty machine-id: systemd makes a transient one at each boot (the root cannot keep one),
# and every box from this image gets its own.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
: > "$root/etc/resolv.conf"  # mmdebstrap copied the build host's
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/apt "$root"/var/log/*.log
find "$root/tmp" "$root/var/tmp" -mindepth 1 -delete

# --- 2. software bill of materials, next to the image and inside it ---
dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package}\t${Version}\t${Architecture}\n' \
  > "$build/appliance.packages.tsv"
cp "$build/python-report.json" "$build/appliance.python-report.json"
python3 "$here/sbom.py" "$build/python-report.json" > "$build/appliance.python-lock.txt"
install -d "$root/usr/share/appliance/sbom"
cp "$build/appliance.packages.tsv" "$build/appliance.python-lock.txt" "$root/usr/share/appliance/sbom/"

# --- 3. the three file systems ---
rm -rf "$work" && mkdir -p "$work"
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$root/boot/initrd.img-${kernel##*/vmlinuz-}
truncate -s ${ESP_MIB}M "$work/esp.img"
mkfs.vfat -F 32 -n ESP "$work/esp.img" > /dev/null
cat > "$work/loader.conf" <<LOADER
default appliance.conf
timeout 0
editor no
LOADER
# console=tty0 last: /dev/console is the screen; the kernel and provisioning also write to ttyS0.
cat > "$work/appliance.conf" <<ENTRY
title   Appliance $version ($build_date)
linux   /appliance/vmlinuz
initrd  /appliance/initrd.img
options root=PARTUUID=$root_uuid rootfstype=erofs ro systemd.gpt_auto=0 console=ttyS0,115200 console=tty0 quiet
ENTRY
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/appliance
mcopy -i "$work/esp.img" "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$work/esp.img" "$work/appliance.conf" ::/loader/entries/appliance.conf
mcopy -i "$work/esp.img" "$kernel" ::/appliance/vmlinuz
mcopy -i "$work/esp.img" "$initrd" ::/appliance/initrd.img

mkfs.erofs --quiet -zlz4hc --exclude-regex='^var/.' --exclude-regex='^boot/.' "$work/root.img" "$root" > /dev/null
mkfs.ext4 -q -F -L appliance-var -d "$root/var" "$work/var.img" ${VAR_MIB}M > /dev/null

# --- 4. the GPT disk: partitions 1 MiB aligned, copied in sparsely ---
root_mib=$(( ($(stat -c %s "$work/root.img") + 1048575) / 1048576 ))
disk=$build/appliance.raw
rm -f "$disk"
truncate -s $(( (1 + ESP_MIB + root_mib + VAR_MIB + 1) * 1048576 )) "$disk"
mib() { echo $(( $1 * 2048 )); }  # MiB in 512-byte sectors
sfdisk --quiet "$disk" <<GPT
label: gpt
start=$(mib 1), size=$(mib $ESP_MIB), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_uuid, name="ESP"
start=$(mib $((1 + ESP_MIB))), size=$(mib $root_mib), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_uuid, name="appliance-root"
start=$(mib $((1 + ESP_MIB + root_mib))), size=$(mib $VAR_MIB), type=4D21B016-B534-45C2-A9FB-5C16E091FD2D, uuid=$var_uuid, name="appliance-var"
GPT
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=$((1 + ESP_MIB)) conv=notrunc,sparse status=none
dd if="$work/var.img" of="$disk" bs=1M seek=$((1 + ESP_MIB + root_mib)) conv=notrunc,sparse status=none
rm -rf "$work"

cat > "$build/appliance.json" <<INFO
{"image": "appliance.raw", "version": "$version", "build_date": "$build_date",
 "kernel": "${kernel##*/vmlinuz-}", "disk_bytes": $(stat -c %s "$disk"),
 "disk_allocated_bytes": $(( $(stat -c %b "$disk") * $(stat -c %B "$disk") )),
 "partitions_mib": {"esp": $ESP_MIB, "root": $root_mib, "var": $VAR_MIB},
 "var_partition_offset_bytes": $(( (1 + ESP_MIB + root_mib) * 1048576 ))}
INFO
echo "image: $disk ($(du -h --apparent-size "$disk" | cut -f1) apparent, $(du -h "$disk" | cut -f1) allocated)"
