#!/usr/bin/env bash
# Set up everything and run every test: lint, unit + contract + integration (pytest), ansible-test sanity, then each
# molecule scenario (check mode, converge, idempotence, verify). Prints each step's duration; any
# failure fails the whole run.
#   scripts/test.sh                 everything
#   scripts/test.sh docker          only the named molecule scenario(s), after lint, pytest and sanity
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_HOME="$PWD/.ansible"

declare -a summary=()
step() {  # name command...
  local name=$1 start rc=0
  shift
  echo "=== $name"
  start=$(date +%s)
  "$@" || rc=$?
  summary+=("$(printf '%-28s %5ss  %s' "$name" "$(($(date +%s) - start))" "$([ $rc = 0 ] && echo ok || echo FAILED)")")
  if [ $rc != 0 ]; then
    printf '%s\n' "--- durations" "${summary[@]}"
    echo "FAILED: $name (exit $rc)"
    exit $rc
  fi
}

step "ansible-lint" ansible-lint --offline -q
step "pytest" python -m pytest -q tests
step "ansible-test sanity" tests/sanity/run.sh
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
for s in "${scenarios[@]}"; do
  step "molecule $s" molecule test -s "$s"
done
printf '%s\n' "--- durations" "${summary[@]}"
echo "all tests passed"
