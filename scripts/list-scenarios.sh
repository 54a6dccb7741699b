#!/usr/bin/env bash
# Molecule scenarios in the order `make molecule` runs them (molecule/_* are shared files).
cd "$(dirname "$0")/../molecule" 2>/dev/null || exit 0
for d in */molecule.yml; do
  d=${d%/molecule.yml}
  case "$d" in _*) continue ;; esac
  echo "$d"
done
