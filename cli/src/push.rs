//! `skiff push FILE.wasm REGISTRY/REPO:TAG`: publishes a WebAssembly module or component as a
//! Wasm OCI artifact and prints its manifest digest.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct PushArgs {
    /// The module or component (`.wasm`).
    file: PathBuf,
    /// Where to publish it: `REGISTRY/REPO:TAG`.
    reference: String,
    /// A registry (`host` or `host:port`) to reach over plain HTTP; loopback registries always
    /// are. Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
}

pub fn run(args: PushArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let digest = runtime.block_on(skiff_node::images::push_wasm(
        &args.file,
        &args.reference,
        &args.insecure_registries,
    ))?;
    println!("{digest}");
    Ok(())
}
