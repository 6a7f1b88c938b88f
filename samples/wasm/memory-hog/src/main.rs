//! Allocates and touches 1 MiB chunks forever until `limits.memory` stops it.

const MIB: usize = 1024 * 1024;

fn main() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really used, not just reserved.
        let mut chunk = vec![0u8; MIB];
        for i in (0..MIB).step_by(4096) {
            chunk[i] = 1;
        }
        chunks.push(chunk);
        println!("allocated {} MiB", chunks.len());
    }
}
