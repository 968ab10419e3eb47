#!/bin/sh
# Builds what the container image runs, into a virtual environment: the project and its runtime dependencies
# (no dev extras), then the static files. The Dockerfile RUNs this in its builder stage; tests/deploy runs it in a
# fresh temporary venv, so the image's build steps are exercised in CI even where no container engine runs.
#
#   sh deploy/image/build.sh VENV_DIR
#
# Environment: PYTHON (the interpreter that creates the venv, default python3); STATIC_ROOT (where collectstatic
# writes; default the settings' own, <project>/staticfiles); PIP_* as pip reads them (PIP_NO_CACHE_DIR, ...).
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1
project_dir=$(cd "$(dirname "$0")/../.." && pwd)

"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# Not editable, no [dev] extra: the venv holds the runtime dependencies and the project, nothing else.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$project_dir"

# Static files (admin, API docs) at build time. Settings refuse to load with DEBUG off and no SECRET_KEY, so a
# throwaway key is given to this one command; it is never stored and the running image needs the real one.
cd "$project_dir"
DEBUG=false \
SECRET_KEY="collectstatic-only-$(date +%s)-not-a-real-key" \
DATABASE_URL="sqlite:///:memory:" \
    "$venv/bin/python" manage.py collectstatic --noinput --verbosity 1
