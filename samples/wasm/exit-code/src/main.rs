//! Exits with the code given as its first argument (default 3), saying so on stderr.

fn main() {
    let code = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<i32>().ok())
        .unwrap_or(3);
    eprintln!("exiting with {code}");
    std::process::exit(code);
}
