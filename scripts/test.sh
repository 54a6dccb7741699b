#!/usr/bin/env bash
# `make test`: every phase in turn, each timed; the summary lists them all.
# A failing phase does not hide the others' results, but fails the run.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
phases=(${DP_TEST_PHASES:-lint sanity unit integration molecule})
declare -A took result
overall=0
for p in "${phases[@]}"; do
  echo
  echo "################ phase: $p ################"
  start=$(date +%s)
  if make --no-print-directory "$p"; then result[$p]=ok; else result[$p]=FAILED; overall=1; fi
  took[$p]=$(( $(date +%s) - start ))
  echo "################ phase $p: ${result[$p]} in ${took[$p]} s ################"
done
# Leave nothing behind: test containers, the shared `molecule` network and the platform
# scenario's volume, the identity and moto peers.
docker ps -aq --filter label=owner=molecule | xargs -r docker rm -f >/dev/null 2>&1 || true
docker network rm molecule >/dev/null 2>&1 || true
docker volume rm dataplatform-platform-efs >/dev/null 2>&1 || true
[ -f tests/peers/identity.py ] && .venv/bin/python tests/peers/identity.py stop >/dev/null 2>&1 || true
[ -f tests/peers/moto_peer.py ] && .venv/bin/python tests/peers/moto_peer.py stop >/dev/null 2>&1 || true

echo
echo "phase        result   seconds"
passed=0; failed=0
for p in "${phases[@]}"; do
  printf '%-12s %-8s %s\n' "$p" "${result[$p]}" "${took[$p]}"
  [ "${result[$p]}" = ok ] && passed=$((passed + 1)) || failed=$((failed + 1))
done
echo "phases: $passed passed, $failed failed"
exit $overall
