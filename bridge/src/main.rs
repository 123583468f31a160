//! `pvc-bridge` binary: thin CLI over the library.

fn main() {
    println!("pvc-bridge {}", env!("CARGO_PKG_VERSION"));
}
