//! A WASI preview 1 command: greets, then shows what the pod handed it (argv and the
//! `GREETING*`/`POD_*` environment variables), one per line.

fn main() {
    println!("Hello from Skiff!");
    for arg in std::env::args().skip(1) {
        println!("arg: {arg}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("GREETING") || name.starts_with("POD_"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        println!("{name}={value}");
    }
}
