#!/usr/bin/env python
"""Build the execution environment image (execution-environment.yml) with ansible-builder, without Galaxy.

The collections go into the image as tarballs made here, in build/ee/: this checkout (`ansible-galaxy collection
build`) and the collections it uses (requirements.yml, with their dependencies) re-packed from where this controller
has them installed (the `ansible` package from PyPI, or a Galaxy install), so the image holds exactly the versions the
tests ran with. Every re-packed file is checked against the checksum its collection's release recorded (FILES.json).
The tarballs are byte-for-byte reproducible, so an unchanged checkout rebuilds from the container engine's cache.

    scripts/build_ee.py [ansible-builder build options]     e.g. -t comfyops-comfyui-ee:0.1.0
                                                            --build-arg EE_BASE_IMAGE=comfyops-rig/ee-base:trixie
    scripts/build_ee.py --prepare-only                      only write build/ee/ (tarballs + requirements.yml)
"""
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "ee"
BIN = Path(sys.executable).parent


def _deterministic_tarball(dest, members):
    """Write (TarInfo, bytes|None) members to dest as a .tar.gz with no times or owners in it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    with open(dest, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return dest


def _entry(name, data=None, mode=0o644):
    info = tarfile.TarInfo(name)
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = len(data), mode
    return info, data


def normalize(tarball, dest):
    """The same collection tarball without ansible-galaxy's build times, so an unchanged checkout gives equal bytes."""
    with tarfile.open(tarball) as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
    return _deterministic_tarball(dest, members)


def repack(installed, dest_dir):
    """A collection tarball from an installed collection (MANIFEST.json, FILES.json and its files).

    The `ansible` package ships collections without their tests and some docs but keeps the release's FILES.json,
    which ansible-galaxy checks completely on install: the files present are checked against it here, and the
    tarball gets a FILES.json (and MANIFEST.json checksum) listing just those.
    """
    manifest = json.loads((installed / "MANIFEST.json").read_text())
    info = manifest["collection_info"]
    files = json.loads((installed / "FILES.json").read_text())
    kept, members = [], []
    for entry in files["files"]:
        path = installed / entry["name"]
        if entry["name"] == ".":
            kept.append(entry)
        elif entry["ftype"] == "dir" and path.is_dir():
            kept.append(entry)
            members.append(_entry(entry["name"]))
        elif entry["ftype"] == "file" and path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["chksum_sha256"]:
                raise SystemExit(f"{info['namespace']}.{info['name']}: {path} differs from its release checksum")
            kept.append(entry)
            members.append(_entry(entry["name"], data, 0o755 if path.stat().st_mode & 0o111 else 0o644))
    files_json = json.dumps(dict(files, files=kept), indent=4).encode()
    manifest["file_manifest_file"]["chksum_sha256"] = hashlib.sha256(files_json).hexdigest()
    head = [_entry("MANIFEST.json", json.dumps(manifest, indent=4).encode()), _entry("FILES.json", files_json)]
    dest = dest_dir / f"{info['namespace']}-{info['name']}-{info['version']}.tar.gz"
    return _deterministic_tarball(dest, head + members)


def installed_collections():
    """{name: (path, version)} of the collections the controller would use: the first of each in search order."""
    out = subprocess.run([BIN / "ansible-galaxy", "collection", "list", "--format", "json"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    found = {}
    for base, collections in json.loads(out).items():
        for name, meta in collections.items():
            ns, coll = name.split(".")
            found.setdefault(name, (Path(base) / ns / coll, meta["version"]))
    return found


def prepare(out=OUT):
    """Write out/collections/*.tar.gz and out/requirements.yml (the EE's galaxy requirements); return the tarballs."""
    collections = out / "collections"
    if collections.exists():
        for old in collections.glob("*.tar.gz"):
            old.unlink()
    collections.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", tmp, str(ROOT)],
                       check=True, stdout=subprocess.DEVNULL)
        built = next(Path(tmp).glob("*.tar.gz"))
        tarballs = [normalize(built, collections / built.name)]

    installed = installed_collections()
    # (name, version spec, who asks): requirements.yml, then each collection's own dependencies
    queue = [(r["name"], r.get("version", "*"), "requirements.yml")
             for r in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]]
    done = set()
    while queue:
        name, spec, source = queue.pop(0)
        if name not in installed:
            raise SystemExit(f"{name} ({source}) is not installed on this controller: pip install -r "
                             "requirements-dev.txt (the ansible package has it) or ansible-galaxy collection install")
        path, version = installed[name]
        if spec != "*" and version not in SpecifierSet(spec.replace(" ", "")):
            raise SystemExit(f"{name} {version} at {path} does not meet {spec} ({source})")
        if name in done:
            continue
        done.add(name)
        tarballs.append(repack(path, collections))
        deps = json.loads((path / "MANIFEST.json").read_text())["collection_info"]["dependencies"] or {}
        queue += [(n, s, name) for n, s in deps.items()]

    # ansible-builder copies build/ee/collections to _build/collections and installs this file from _build.
    requirements = {"collections": [{"name": f"collections/{t.name}", "type": "file"} for t in sorted(tarballs)]}
    (out / "requirements.yml").write_text("---\n# Written by scripts/build_ee.py.\n" + yaml.safe_dump(requirements))
    return tarballs


def main(argv):
    for tarball in prepare():
        print(f"[ee] {tarball.relative_to(ROOT)}")
    if argv[:1] == ["--prepare-only"]:
        return 0
    cmd = [BIN / "ansible-builder", "build", "-f", ROOT / "execution-environment.yml", "-c", OUT / "context", *argv]
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
