#!/usr/bin/env bash
# Build (or reuse) the Rasa 3.6.21 virtualenv. Rasa must live apart from the app: it pins
# aiohttp<3.10, pymongo<4.4, redis<5 and tensorflow 2.12 (see README, "What is real").
# The venv is cached outside the checkout, keyed by a hash of the lock files, so a fresh
# clone (CI) reuses it while requirements/rasa-*.txt are unchanged.
# Prints the venv's path as the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${SCRM_CACHE:-$HOME/.cache/scrm}
key=$(cat "$here/requirements/rasa-deps.txt" "$here/requirements/rasa-lock.txt" | sha256sum | cut -c1-16)
venv="$cache/rasa-venv-$key"
if [ -f "$venv/.complete" ]; then echo "$venv"; exit 0; fi
echo "building the Rasa venv in $venv (about 3 minutes, 2.8 GB)" >&2
rm -rf "$venv"
mkdir -p "$cache"
python3.11 -m venv "$venv" >&2
# Rasa 3.6.21 declares Python<3.11 but runs on 3.11; only its own wheels need the override.
"$venv/bin/pip" install -q --no-deps --ignore-requires-python rasa==3.6.21 rasa-sdk==3.6.2 >&2
# No --ignore-requires-python here: pip would pick releases that need Python 3.12.
# pip warns that rasa wants matplotlib<3.6; 3.5 has no 3.11 wheel, and 3.8 works (FACTS.md).
"$venv/bin/pip" install -q -r "$here/requirements/rasa-deps.txt" -c "$here/requirements/rasa-lock.txt" >&2
touch "$venv/.complete"
echo "$venv"
