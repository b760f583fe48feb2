# Shared set-up steps for scripts/start and scripts/test (sourced, not run).
# Works on a fresh Debian/Ubuntu machine that has python3 (>= 3.11), as root or with sudo.

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

say() {
  if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_debian_packages PKG...: apt-get install the packages that are not installed yet.
ensure_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "please install: ${missing[*]} (no apt-get on this machine)"
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "installing ${missing[*]} needs root or sudo"
    as_root=(sudo)
  fi
  say "installing Debian packages: ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ensure_venv: a virtual environment in $VENV made with $PYTHON (>= 3.11).
ensure_venv() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found; gftune needs Python >= 3.11"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "gftune needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    return 0
  fi
  if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    ensure_debian_packages python3-venv  # Debian ships venv's pip bootstrap separately
  fi
  say "creating $VENV with $("$PYTHON" --version 2>&1)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
}

# pip_install SPEC...: install into the venv (quietly; errors still show).
pip_install() {
  say "pip install $*"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

# ensure_npm_package NAME@VERSION: npm install it into $VENV/node (once per version). Needs Node.js and
# npm, installed from Debian's packages when missing.
ensure_npm_package() {
  local spec="$1" name="${1%@*}" version="${1##*@}" prefix="$VENV/node"
  if [ -f "$prefix/node_modules/$name/package.json" ] \
    && grep -q "\"version\": \"$version\"" "$prefix/node_modules/$name/package.json"; then
    return 0
  fi
  command -v npm >/dev/null || ensure_debian_packages nodejs npm
  say "npm install $spec"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$spec" >/dev/null
}
