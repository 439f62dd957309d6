"""Regenerate appliance/_generated from proto/ (`make proto`); `--check` fails if it is stale."""
from __future__ import annotations

import filecmp
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
OUT = ROOT / "appliance" / "_generated"


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # protoc writes absolute imports (`from appliance.v1 import ...`); make them package-relative.
    for path in out.rglob("*.py"):
        text = re.sub(r"^from appliance\.v1 import", "from appliance._generated.appliance.v1 import",
                      path.read_text(), flags=re.M)
        path.write_text(text)
    for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


def main() -> None:
    if "--check" not in sys.argv:
        generate(OUT)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [str(p.relative_to(tmp)) for p in Path(tmp).rglob("*.py*")
                 if not (OUT / p.relative_to(tmp)).exists() or not filecmp.cmp(p, OUT / p.relative_to(tmp), shallow=False)]
    if stale:
        raise SystemExit(f"appliance/_generated is stale ({', '.join(stale)}): run `make proto`")
    print("generated code is current")


if __name__ == "__main__":
    main()
