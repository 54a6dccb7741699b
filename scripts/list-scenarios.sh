#!/usr/bin/env bash
# Molecule scenarios in the order `make molecule` runs them (molecule/_* are shared files).
# A scenario whose molecule.yml says "run-in-make-test: no" (its tests run inside another
# scenario's converge) is left out; name it in SCENARIOS to run it.
cd "$(dirname "$0")/../molecule" 2>/dev/null || exit 0
for d in */molecule.yml; do
  grep -q "run-in-make-test: no" "$d" && continue
  d=${d%/molecule.yml}
  case "$d" in _*) continue ;; esac
  echo "$d"
done
