#!/usr/bin/env bash
# The whole pipeline on generated data. Re-runnable: it replaces the demo data each time.
set -euo pipefail
TT=".venv/bin/twotower"
echo "== twotower demo (TWOTOWER_HOME=${TWOTOWER_HOME:-.twotower})"
$TT db init
$TT synth --users 2000 --videos 5000 --decisions 100000 --seed 7 --replace
$TT summary
