//! Opens a TCP connection to `args[1]` (default `127.0.0.1:80`) and exits 0 if it connects, 1
//! if not. Without a pod network namespace Wasm containers get no sockets, so it must fail
//! with Skiff's denial in its log; in a pod with one, it reaches what that network reaches.

use std::net::TcpStream;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:80".into());
    match TcpStream::connect(&addr) {
        Ok(_) => println!("connected to {addr}"),
        Err(e) => {
            eprintln!("cannot connect to {addr}: {e}");
            std::process::exit(1);
        }
    }
}
