#!/usr/bin/env bash
# Runs `ansible-test sanity` for the collection (no containers, no internet but PyPI):
#   tests/sanity/run.sh                   every sanity test on Python 3.11
#   tests/sanity/run.sh --test pylint     extra arguments go to ansible-test sanity
# Needs .venv (scripts/setup.sh). Exceptions live in tests/sanity/ignore-2.19.txt, one reason per line.
# The shellcheck sanity test is optional: without the tool (apt-get install shellcheck) ansible-test
# skips that test with a warning.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$root/.venv/bin:$PATH" ANSIBLE_HOME="$root/.ansible"

# ansible-test only runs from .../ansible_collections/NAMESPACE/NAME/. The repo's link is that path, and
# ANSIBLE_TEST_CONTENT_ROOT stops ansible-test from resolving the link back to the repo (os.getcwd()).
link="$root/.ansible/collections/ansible_collections/comfyops/comfyui"
if [ ! -L "$link" ]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn "$root" "$link"
fi
export ANSIBLE_TEST_CONTENT_ROOT="$link"

# Each sanity test runs in its own venv under ~/.ansible/test/venv, into which ansible-test bootstraps pip
# with a get-pip script from ci-files.testing.ansible.com (not reachable here). Its cache slot gets a
# stand-in that does the same thing with the pip wheel from PyPI.
ansible_test=$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',\$/\1/p" "$ansible_test/_internal/python_requirements.py" | head -n1)
cache="$HOME/.ansible/test/cache"
get_pip="$cache/get_pip_${pip_version//./_}.py"
if [ -n "$pip_version" ] && [ ! -f "$get_pip" ]; then
  mkdir -p "$cache"
  python -m pip download -q --no-deps -d "$cache" "pip==$pip_version"
  cat >"$get_pip" <<EOF
# Stand-in for get-pip.py $pip_version (written by tests/sanity/run.sh): pip from the PyPI wheel beside it.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$pip_version-py3-none-any.whl"))

if __name__ == "__main__":
    from pip._internal.cli.main import main

    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
EOF
fi

cd "$link"
exec ansible-test sanity --python 3.11 --color no "$@"
