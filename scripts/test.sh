#!/usr/bin/env bash
# Set up everything and run every test: lint, unit + contract + integration (pytest, with the coverage floor),
# ansible-test sanity, then each molecule scenario (check mode, converge, idempotence, verify). Prints each step's
# duration and the total; any failure fails the whole run.
#   scripts/test.sh                 everything, in parallel lanes (CI: .ci/run)
#   scripts/test.sh docker          lint, pytest, sanity, then only the named molecule scenario(s), one after the other
# Lanes share the 2 cores; each writes its log to tests/output/ci/<lane>.log, and a failed lane's log tail is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_HOME="$PWD/.ansible"
logs=tests/output/ci
rm -rf "$logs"
mkdir -p "$logs"

# The steps: name and command.
declare -A commands=(
  [lint]="ansible-lint --offline -q"
  [pytest]="python -m pytest -q tests"
  [sanity]="tests/sanity/run.sh"
)
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
for s in "${scenarios[@]}"; do commands["molecule $s"]="molecule test -s $s"; done

# Lanes: the longest scenario alone, the rest balanced by their last measured durations (README, "Test times").
if [ $# -gt 0 ]; then
  lanes=("lint|pytest|sanity$(printf '|molecule %s' "${scenarios[@]}")")
else
  lanes=("lint|pytest|sanity|molecule docker|molecule ee"
         "molecule upstream|molecule nvidia_container_toolkit"
         "$(printf 'molecule %s|' "${scenarios[@]}" | tr '|' '\n' \
            | grep -vxE 'molecule (upstream|docker|nvidia_container_toolkit|ee)' | paste -sd'|')")
fi

run_lane() {  # index, "step|step|..."
  local n=$1 steps=$2 step start rc
  IFS='|' read -r -a list <<<"$steps"
  for step in "${list[@]}"; do
    [ -n "$step" ] || continue
    start=$(date +%s)
    echo "=== $step" >>"$logs/lane$n.log"
    rc=0
    bash -c "${commands[$step]}" >>"$logs/lane$n.log" 2>&1 || rc=$?
    printf '%-34s %5ss  %s\n' "$step" "$(($(date +%s) - start))" "$([ $rc = 0 ] && echo ok || echo "FAILED (lane $n)")" \
      | tee -a "$logs/summary.txt"
    [ $rc = 0 ] || return $rc
  done
}

total_start=$(date +%s)
pids=()
for i in "${!lanes[@]}"; do
  run_lane "$i" "${lanes[$i]}" &
  pids+=($!)
done
failed=()
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("$i"); done
echo "--- durations (lanes in parallel)"
cat "$logs/summary.txt"
printf '%-34s %5ss\n' "total" "$(($(date +%s) - total_start))"
if [ ${#failed[@]} -gt 0 ]; then
  for i in "${failed[@]}"; do
    echo "--- last 150 lines of lane $i (${lanes[$i]}); whole log: $logs/lane$i.log"
    tail -n 150 "$logs/lane$i.log"
  done
  # last, so that a short tail of the output still names what failed (pytest's and molecule's summary lines)
  echo "--- what failed"
  for i in "${failed[@]}"; do
    # pytest's short summary (molecule wraps its lines: joined again) and Ansible's task errors
    sed -E 's/\x1b\[[0-9;]*m//g; s/^ *│ //' "$logs/lane$i.log" \
      | awk '/short test summary info/ {on = 1; next} on && /^=+ .*(failed|passed|error)/ {on = 0; print line; line = ""}
             on && /^ *=+ *$/ {next}
             on && /^  / {sub(/^ +/, ""); line = line (line ~ /^(FAILED|ERROR)$/ ? " " : "") $0; next}
             on {if (line != "") print line; line = $0; next}
             /\[ERROR\]: Task failed/ {print substr($0, 1, 300)}' | tail -n 30
  done
  echo "FAILED: lane(s) ${failed[*]}"
  exit 1
fi
echo "all tests passed"
