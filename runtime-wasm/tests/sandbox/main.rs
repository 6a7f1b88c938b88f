//! `WasmtimeSandbox` against real wasmtime, running the sample modules of `samples/wasm`
//! (built by `samples/wasm/build.sh`) and inline WAT.

mod common;
mod isolation;
mod lifecycle;
mod memory;
