#!/bin/sh
# Builds every sample module in release and copies it to out/<name>.wasm.
# Preview 1 modules target wasm32-wasip1; hello-component, net-probe and http-hello target
# wasm32-wasip2 (a Rust binary built for it is a wasi:cli/command component; net-probe and
# http-hello need wasi:sockets to really open sockets rather than fail inside their own libc).
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
# One place for the build output: beside the host's target dir when one is set.
target_dir="${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/samples-wasm}"
target_dir="${target_dir:-$here/target}"

if ! command -v rustup >/dev/null 2>&1; then
    echo "build.sh: rustup is needed to add the wasm32-wasip1 and wasm32-wasip2 targets" >&2
    exit 1
fi
installed="$(rustup target list --installed)"
for target in wasm32-wasip1 wasm32-wasip2; do
    if ! printf '%s\n' "$installed" | grep -qx "$target"; then
        rustup target add "$target"
    fi
done

p1="hello config-reader exit-code sleeper memory-hog cpu-spinner passwd-reader"
p2="hello-component net-probe http-hello"

cd "$here"
mkdir -p out
build() {
    target="$1"
    shift
    packages=""
    for name in "$@"; do
        packages="$packages -p $name"
    done
    # shellcheck disable=SC2086 # one -p per package, split on purpose
    cargo build --release --target "$target" --target-dir "$target_dir" $packages
    for name in "$@"; do
        cp "$target_dir/$target/release/$name.wasm" "out/$name.wasm"
    done
}
build wasm32-wasip1 $p1
build wasm32-wasip2 $p2
ls -l out
