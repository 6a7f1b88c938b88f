//! Tries to open a TCP connection: Wasm containers get no sockets yet, so it must fail.

use std::net::TcpStream;

fn main() {
    match TcpStream::connect("127.0.0.1:80") {
        Ok(_) => println!("connected to 127.0.0.1:80"),
        Err(e) => {
            eprintln!("cannot connect to 127.0.0.1:80: {e}");
            std::process::exit(1);
        }
    }
}
