# Shared by bin/start and bin/test: find Python 3.12+ and keep .venv in step with pyproject.toml.
# shellcheck shell=bash

find_python() {
    local candidate
    # .python-version selects 3.12 through pyenv when it is installed.
    if command -v pyenv >/dev/null 2>&1; then
        candidate=$(pyenv which python 2>/dev/null || true)
        if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
            echo "$candidate"
            return
        fi
    fi
    for candidate in python3.13 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
            command -v "$candidate"
            return
        fi
    done
    echo "ClinikUI needs Python 3.12 or newer; none was found (pyenv, python3.12, python3)." >&2
    return 1
}

# ensure_venv EXTRAS: create .venv and install the project with the given extras ("" or "dev"),
# again only when pyproject.toml changed since the last install.
ensure_venv() {
    local extras=$1 python stamp wanted
    if [ ! -x .venv/bin/python ]; then
        python=$(find_python)
        echo "Creating .venv with $("$python" --version)"
        "$python" -m venv .venv
    fi
    stamp=.venv/.clinikui-installed
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) extras=$extras"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
        if [ -n "$extras" ]; then
            .venv/bin/python -m pip install --quiet --disable-pip-version-check ".[$extras]"
        else
            .venv/bin/python -m pip install --quiet --disable-pip-version-check .
        fi
        echo "$wanted" > "$stamp"
    fi
    export PATH="$PWD/.venv/bin:$PATH"
}

# apt_install PACKAGE...: install Debian packages that are missing (needs root or sudo).
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            echo "Please install these Debian packages first: $*" >&2
            return 1
        fi
    fi
    echo "Installing Debian packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
