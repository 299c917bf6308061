//! `ioap-gateway` binary (placeholder until the gateway issue lands).

fn main() {
    eprintln!("ioap-gateway is not implemented yet");
    std::process::exit(2);
}
