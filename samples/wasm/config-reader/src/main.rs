//! Prints every file of the ConfigMap mounted at `/config` as `name=value`, sorted, then sleeps
//! so its logs can be read while it runs. `--once` exits after printing.

use std::time::Duration;

fn main() {
    let once = std::env::args().any(|a| a == "--once");
    match read_config("/config") {
        Ok(entries) => {
            for (name, value) in entries {
                println!("{name}={value}");
            }
        }
        Err(e) => {
            eprintln!("cannot read /config: {e}");
            std::process::exit(1);
        }
    }
    if once {
        return;
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn read_config(dir: &str) -> std::io::Result<Vec<(String, String)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // A kubelet-style ConfigMap volume also holds `..data` links and dot-dirs: skip them.
        // Its keys are symlinks into `..data`, so follow them to see files.
        if name.starts_with('.') || !std::fs::metadata(entry.path())?.is_file() {
            continue;
        }
        let value = std::fs::read_to_string(entry.path())?;
        entries.push((name, value.trim_end_matches('\n').to_string()));
    }
    entries.sort();
    Ok(entries)
}
