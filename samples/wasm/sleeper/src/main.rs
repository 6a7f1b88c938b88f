//! Says `sleeping` once, then sleeps forever: the idle pod of density tests.

use std::time::Duration;

fn main() {
    println!("sleeping");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
