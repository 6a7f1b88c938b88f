//! Tries to read the host's `/etc/passwd`: a Wasm container has no ambient filesystem, so it
//! must fail.

fn main() {
    match std::fs::read_to_string("/etc/passwd") {
        Ok(contents) => print!("{contents}"),
        Err(e) => {
            eprintln!("cannot read /etc/passwd: {e}");
            std::process::exit(1);
        }
    }
}
