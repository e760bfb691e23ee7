#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it: lint, format, types, tests.
#
#   bash tests/run.sh            # the whole suite
#   bash tests/run.sh -k paging  # extra arguments go to pytest
#
# Installs into the active Python environment (use a virtualenv if you prefer). OS packages
# that tests need are installed with apt-get when missing and running as root; otherwise the
# script names them and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

# OS packages the suite needs: "command package" pairs.
os_needs=(
  "promtool prometheus"              # promtool check metrics / rules, and the Prometheus server
  "prometheus-alertmanager prometheus-alertmanager"  # Alertmanager (and amtool) for the alert e2e
  "chromium chromium"                # the landing page, rendered in a real headless browser
)
missing=()
for pair in "${os_needs[@]+"${os_needs[@]}"}"; do
  read -r cmd pkg <<<"$pair"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: installing OS packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing OS packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# A stock Debian/Ubuntu python3 is "externally managed" (PEP 668): pip refuses to install into
# it. Outside a virtualenv, such a Python gets one in .venv (created once, reused after).
if "$PYTHON" - <<'EOF'
import sys, sysconfig, pathlib
outside_venv = sys.prefix == sys.base_prefix
managed = (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()
sys.exit(0 if outside_venv and managed else 1)
EOF
then
  if [[ ! -x .venv/bin/python ]]; then
    echo "tests/run.sh: $PYTHON is externally managed; creating .venv (needs python3-venv)"
    if ! "$PYTHON" -m venv .venv; then
      rm -rf .venv
      if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        "$PYTHON" -m venv .venv
      else
        echo "tests/run.sh: install python3-venv (sudo apt-get install python3-venv), or run in a virtualenv" >&2
        exit 1
      fi
    fi
  fi
  PYTHON=.venv/bin/python
fi

"$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
echo "== mypy"
"$PYTHON" -m mypy
echo "== pytest"
# pytest exits 5 when no test ran; set -e turns that (and any failure) into a failed run.
"$PYTHON" -m pytest "$@"
