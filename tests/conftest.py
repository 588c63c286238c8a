"""Make the repo importable as ansible_collections.comfyops.comfyui for pytest.

Ansible modules import their shared code by its collection path, so the tests see the repo
through a symlink under .ansible/collections (ignored by git, the same path ansible.cfg uses).
The run fails when a test leaves a process or a test host container behind (tests/leftovers.py); coverage of
plugins/ follows modules into ansible-playbook runs and has a floor (tests/coverage_support.py).
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".ansible" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "comfyops" / "comfyui"

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to(ROOT, target_is_directory=True)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

pytest_plugins = ["leftovers", "coverage_support"]

# Testinfra suites in tests/integration/<scenario>/ run inside `molecule verify`, against its hosts.
if not os.environ.get("MOLECULE_INVENTORY_FILE"):
    collect_ignore_glob = ["integration/*/test_*.py"]
