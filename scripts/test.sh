#!/usr/bin/env bash
# THE test command: installs what the tests need (on Debian 12, as root), builds skiff, and runs every
# unit and end-to-end test. Idempotent: when everything is installed it goes straight to the build.
set -euo pipefail

cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages ------------------------------------------------------------------------------
# command -> package providing it.
declare -A PACKAGES=(
    [curl]=curl
    # jemalloc, which skiff links, is built from C with make.
    [cc]=gcc
    [make]=make
    [etcd]=etcd-server
    [docker-registry]=docker-registry
    [runc]=runc
    [skopeo]=skopeo
    [umoci]=umoci
    [busybox]=busybox-static
    # Pod networking (CNI's bridge plugin masquerades through iptables) and the end-to-end
    # tests' checks and cleanup of links, NAT rules and processes.
    [ip]=iproute2
    [iptables]=iptables
    [kill]=procps
)
# file -> package, for packages that put no command on PATH.
declare -A FILES=(
    # The CNI plugins (bridge, host-local, loopback, portmap) pods are networked with.
    [/usr/lib/cni/bridge]=containernetworking-plugins
)
missing=()
for cmd in "${!PACKAGES[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done
for file in "${!FILES[@]}"; do
    [[ -e $file ]] || missing+=("${FILES[$file]}")
done
# The venv module is a separate package on Debian.
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get to install them"
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}): run as root or install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for cmd in "${!PACKAGES[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd is still missing after installing ${PACKAGES[$cmd]}"
done
for file in "${!FILES[@]}"; do
    [[ -e $file ]] || die "$file is still missing after installing ${FILES[$file]}"
done

# --- kubectl: the stock client the end-to-end tests drive -----------------------------------------
[[ -x /usr/bin/kubectl ]] || die "/usr/bin/kubectl is missing: the end-to-end tests need the stock kubectl"

# --- Python kubernetes client, in a venv under the cache dir --------------------------------------
CACHE_DIR="${SKIFF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/skiff}"
VENV="$CACHE_DIR/venv"
if ! "$VENV/bin/python" -c 'import kubernetes' >/dev/null 2>&1; then
    say "installing the Python kubernetes client into $VENV"
    mkdir -p "$CACHE_DIR"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes
fi
export SKIFF_PYTHON="$VENV/bin/python"

# --- Rust tools ---------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo is missing: install the Rust toolchain (rustup)"
cargo nextest --version >/dev/null 2>&1 || die "cargo-nextest is missing: cargo install cargo-nextest --locked"

# --- Wasm samples: the modules the tests run, built from samples/wasm ------------------------------
say "building the Wasm samples"
samples/wasm/build.sh

# --- Build the binary the end-to-end tests start, then run everything ----------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export SKIFF_BIN="$TARGET_DIR/debug/skiff"
say "building skiff"
cargo build -p skiff
[[ -x $SKIFF_BIN ]] || die "the build did not produce $SKIFF_BIN"

say "running tests"
exec cargo nextest run --workspace --no-fail-fast "$@"
