//! `WasmtimeSandbox` against real wasmtime, running the sample modules of `samples/wasm`
//! (built by `samples/wasm/build.sh`) and inline WAT. The [`network`] tests make real network
//! namespaces: they need root, `nsenter` and `ip`.

mod common;
mod isolation;
mod lifecycle;
mod memory;
mod netns;
mod network;
