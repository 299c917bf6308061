//! `ioap`: identities and (in later releases) agents, calls and load tests from the shell.

fn main() -> std::process::ExitCode {
    ioap::cli::main()
}
