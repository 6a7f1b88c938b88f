//! `WasmtimeSandbox`: runs WASI preview 1 modules and preview 2 `wasi:cli/command` components
//! in-process under wasmtime, behind the [`skiff_sandbox::PodSandbox`] trait.
