#!/usr/bin/env bash
# A tiny PEP 503 package index served at $RIG_REPO_URL/pypi/simple/, so node-pack requirements can be
# installed in tests without PyPI: comfyops-probe-dep 1.0.0 (a pure-Python wheel made here).
set -euo pipefail
. "$(dirname "$0")/common.sh"

index="$RIG_APT_DIR/pypi/simple/comfyops-probe-dep"
[ -s "$index/index.html" ] && { log "test package index is current"; exit 0; }
mkdir -p "$index"
python3 - "$index" <<'PY'
import base64, hashlib, pathlib, sys, zipfile
out = pathlib.Path(sys.argv[1])
name, version = "comfyops_probe_dep", "1.0.0"
files = {
    f"{name}/__init__.py": 'VERSION = "1.0.0"\n',
    f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: comfyops-probe-dep\nVersion: {version}\n",
    f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: comfyops-rig\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join(f"{p},{digest(c.encode())},{len(c.encode())}\n" for p, c in files.items())
record += f"{name}-{version}.dist-info/RECORD,,\n"
whl = out / f"{name}-{version}-py3-none-any.whl"
with zipfile.ZipFile(whl, "w") as z:
    for p, c in files.items():
        z.writestr(p, c)
    z.writestr(f"{name}-{version}.dist-info/RECORD", record)
sha = hashlib.sha256(whl.read_bytes()).hexdigest()
(out / "index.html").write_text(f'<!DOCTYPE html><html><body><a href="{whl.name}#sha256={sha}">{whl.name}</a></body></html>\n')
PY
log "test package index at $RIG_REPO_URL/pypi/simple/"
