# Sourced by bin/run and bin/test: finds a Python Django 6.1 runs on (3.13, else 3.12)
# and (re)creates .venv with it. Not a command of its own.
#
#   PYTHON=/path/to/python3.13 bin/test    # use this interpreter (it must be 3.12 or newer)

# Prints the first suitable interpreter: $PYTHON if set, then python3.13 / python3.12 on
# PATH, then pyenv's versions, then python3 if it happens to be new enough.
find_python() {
    local candidate
    if [ -n "${PYTHON:-}" ]; then
        if python_is_suitable "$PYTHON"; then
            command -v "$PYTHON"
            return 0
        fi
        echo "PYTHON=$PYTHON is not Python 3.12 or newer" >&2
        return 1
    fi
    local pyenv_pythons
    # Newest first: 3.13.10 before 3.13.9, every 3.13 before any 3.12.
    mapfile -t pyenv_pythons < <(
        printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[23]*/bin/python | sort -rV
    )
    for candidate in python3.13 python3.12 "${pyenv_pythons[@]}" python3; do
        if python_is_suitable "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# True when $1 runs and is Python 3.12 or newer (what Django 6.1 requires).
python_is_suitable() {
    command -v "$1" >/dev/null 2>&1 &&
        "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null
}

# Makes .venv with a suitable Python; a .venv made with an older one (or broken) is
# replaced. Sets VENV_PYTHON_VERSION (e.g. "3.13.0") for the callers' install markers.
ensure_venv() {
    if [ -x .venv/bin/python ] && python_is_suitable .venv/bin/python; then
        VENV_PYTHON_VERSION=$(.venv/bin/python -c 'import platform; print(platform.python_version())')
        return 0
    fi
    local python
    if ! python=$(find_python); then
        cat >&2 <<'MSG'
Tablo needs Python 3.13 (3.12 at least: Django 6.1 runs on nothing older), and found none:
looked for python3.13 and python3.12 on PATH, ~/.pyenv/versions/3.13* and 3.12*, python3.
Install one, for example:
    sudo apt-get install python3.13 python3.13-venv     # Debian/Ubuntu with 3.13 packaged
    pyenv install 3.13                                  # with pyenv
then run this again (or point PYTHON at it: PYTHON=/path/to/python3.13 bin/run).
MSG
        exit 1
    fi
    if [ -e .venv ]; then
        echo "==> replacing .venv (its Python is missing or older than 3.12) with $python"
        rm -rf .venv
    else
        echo "==> creating .venv with $python"
    fi
    "$python" -m venv .venv
    VENV_PYTHON_VERSION=$(.venv/bin/python -c 'import platform; print(platform.python_version())')
}
