//! The node's one wasmtime [`Engine`] ([`NodeEngine`]): a pooling allocator with room for every
//! container the node may run at once, epoch interruption driven by a ticker thread, and the
//! WASI linkers (preview 1 for core modules, preview 2 for components) every start reuses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

use crate::error::WasmError;
use crate::run::{ComponentState, ModuleState};

/// How often the epoch advances. Every store yields to the async executor at each tick, so this
/// bounds how long a busy module holds a thread, how far it overshoots its CPU quota and how
/// late a stop lands.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Linear memories reserve address space, not RAM: 4 GiB (the whole 32-bit index space, so
/// compiled code needs no bounds checks) plus the default 32 MiB guard per slot. 10,000 slots
/// are about 40 TiB of the 128 TiB a 48-bit address space offers.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// What one container may hold at most, in pool slots. A Rust `wasm32-wasip2` command
/// component is one core module with its memory plus the adapter and shim modules wit-component
/// adds (tables but no memory of their own); a preview 1 module is one instance with one memory
/// and one table.
const CORE_INSTANCES_PER_CONTAINER: u32 = 8;
const MEMORIES_PER_CONTAINER: u32 = 1;
const TABLES_PER_CONTAINER: u32 = 4;

/// The engine and linkers shared by every container of the node.
pub(crate) struct NodeEngine {
    pub(crate) engine: Engine,
    pub(crate) modules: Linker<ModuleState>,
    pub(crate) components: component::Linker<ComponentState>,
    _ticker: EpochTicker,
}

impl NodeEngine {
    pub(crate) fn new(max_instances: u32) -> Result<NodeEngine, WasmError> {
        let engine = Engine::new(&config(max_instances)).map_err(WasmError::Engine)?;
        let mut modules = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut modules, |s: &mut ModuleState| &mut s.wasi)
            .map_err(WasmError::Engine)?;
        let mut components = component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut components).map_err(WasmError::Engine)?;
        let ticker = EpochTicker::start(engine.clone()).map_err(WasmError::Ticker)?;
        Ok(NodeEngine {
            engine,
            modules,
            components,
            _ticker: ticker,
        })
    }
}

fn config(max_instances: u32) -> Config {
    let n = max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_CONTAINER))
        .total_memories(n.saturating_mul(MEMORIES_PER_CONTAINER))
        .total_tables(n.saturating_mul(TABLES_PER_CONTAINER))
        // One fiber stack per running container: a sleeping one keeps its stack.
        .total_stacks(n)
        .max_memory_size(MAX_MEMORY_BYTES)
        .max_memories_per_module(1);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Copy-on-write images map each memory's data segments from a memfd: two more kernel
        // mappings per instance. At 10,000 pods that is 20,000 of the default
        // `vm.max_map_count` of 65,530, where copying a Rust module's few data pages costs
        // microseconds and the same resident memory.
        .memory_init_cow(false)
        .epoch_interruption(true)
        .wasm_component_model(true);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread only sleeps and ticks; it cannot have panicked with anything to report.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_for_ten_thousand_containers_fits_the_address_space() {
        // Reserving the pools is where an oversized layout fails (about 40 TiB of address space
        // for the memories alone); running them is exercised by the density example.
        NodeEngine::new(10_000).expect("engine for 10,000 instances");
    }
}
