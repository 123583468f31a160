//! pvc-agent: the node daemon. For now it only reports its version; the
//! polling loop, Puppet runner and file watcher come with the agent issue.

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None | Some("--version") | Some("-V") | Some("version") => {
            println!("pvc-agent {}", env!("CARGO_PKG_VERSION"));
        }
        Some(other) => {
            eprintln!("pvc-agent: unknown argument '{other}' (only --version is supported yet)");
            std::process::exit(64);
        }
    }
}
