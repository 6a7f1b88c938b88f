//! `limits.memory` for one container: [`MemoryLimiter`] charges every linear memory and table
//! of the instance against the limit and ends the run, as the kernel's OOM killer would, the
//! moment a growth would pass it.

use wasmtime::ResourceLimiter;

/// A table element is a pointer-sized reference in wasmtime's representation.
const TABLE_ELEMENT_BYTES: u64 = 8;

/// Growing past the container's `limits.memory`.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded: {requested} bytes requested")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) limit: u64,
    pub(crate) requested: u64,
}

#[derive(Debug, Default)]
pub(crate) struct MemoryLimiter {
    limit: Option<u64>,
    /// Bytes the instance's memories and tables hold now.
    charged: u64,
    exceeded: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: Option<u64>) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            ..MemoryLimiter::default()
        }
    }

    /// Whether the run was ended for passing its limit: its outcome is `OOMKilled`.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    fn grow(&mut self, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let requested = self.charged + desired.saturating_sub(current);
        match self.limit {
            Some(limit) if requested > limit => {
                self.exceeded = true;
                // An error rather than `Ok(false)`: a refused `memory.grow` would let the guest
                // limp on or abort in its own words; a container over its limit is killed.
                Err(MemoryLimitExceeded { limit, requested }.into())
            }
            _ => {
                self.charged = requested;
                Ok(true)
            }
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current as u64, desired as u64)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memories_and_tables_share_the_limit_and_passing_it_is_fatal() {
        let mut l = MemoryLimiter::new(Some(16 * MIB as u64));
        assert!(l.memory_growing(0, 15 * MIB, None).unwrap());
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert!(!l.exceeded());
        let err = l.memory_growing(15 * MIB, 16 * MIB, None).unwrap_err();
        assert!(l.exceeded());
        let err = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(err.limit, 16 * MIB as u64);
        assert_eq!(err.requested, 16 * MIB as u64 + 8000);
    }

    #[test]
    fn without_a_limit_everything_is_granted() {
        let mut l = MemoryLimiter::new(None);
        assert!(l.memory_growing(0, 1 << 32, None).unwrap());
        assert!(!l.exceeded());
    }
}
