//! Built for wasm32-wasip2, a Rust binary is a `wasi:cli/command` component.

fn main() {
    println!("Hello from a Skiff component!");
    for arg in std::env::args().skip(1) {
        println!("arg: {arg}");
    }
}
