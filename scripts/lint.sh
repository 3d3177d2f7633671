#!/usr/bin/env bash
# The lint lane, run by .ci/run before the tests: the package type-checks and the code
# passes ruff's rules (settings for both in pyproject.toml). Needs `scripts/setup.sh --dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m mypy src
.venv/bin/python -m ruff check src tests bench
