"""The image's /etc/appliance/appliance.toml: the documented example with the firmware's settings.

The example (systemd/appliance.toml) lists every option commented out with its default; the
image uncomments the few it changes, so the file on the box still documents everything.
Usage: python firmware/image_config.py systemd/appliance.toml > rootfs/etc/appliance/appliance.toml
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

STATE = "/var/lib/appliance"  # the state partition's appliance directory (see firmware/README.md)

# The API and /metrics on every interface, both over TLS with the certificate that first-boot
# provisioning creates; every API call needs the provisioned token (health checks excepted).
IMAGE_SETTINGS: dict[str, dict[str, object]] = {
    "server": {
        "listen": "0.0.0.0:50051",
        "tls_cert": f"{STATE}/tls/cert.pem",
        "tls_key": f"{STATE}/tls/key.pem",
        "token_file": f"{STATE}/tokens",
    },
    "metrics": {
        "listen": "0.0.0.0:9464",
        "tls_cert": f"{STATE}/tls/cert.pem",
        "tls_key": f"{STATE}/tls/key.pem",
    },
}

HEADER = ("# The appliance image's configuration (firmware/image_config.py): the example below with\n"
          "# the image's settings uncommented. The root file system is read-only.\n")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these plain values
    raise TypeError(f"no TOML form for {value!r}")


def configure(example: str, settings: dict[str, dict[str, object]]) -> str:
    """`example` with `# key = ...` replaced by `key = value` in each section; KeyError if absent."""
    lines = example.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if line.startswith("[")]
    for section, values in settings.items():
        try:
            start = lines.index(f"[{section}]\n")
        except ValueError:
            raise KeyError(f"[{section}] not in the example config") from None
        end = next((i for i in headers if i > start), len(lines))
        for key, value in values.items():
            found = [i for i in range(start + 1, end) if lines[i].startswith(f"# {key} = ")]
            if len(found) != 1:
                raise KeyError(f"{section}.{key}: expected one commented '# {key} = ' line, found {len(found)}")
            lines[found[0]] = f"{key} = {_toml(value)}\n"
    return HEADER + "".join(lines)


def main(argv: list[str]) -> None:
    sys.stdout.write(configure(Path(argv[1]).read_text(), IMAGE_SETTINGS))


if __name__ == "__main__":
    main(sys.argv)
