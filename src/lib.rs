//! The `ioap` command-line tool (see `ioap --help`), kept in a library so that the binary is a
//! one-line `main` and tests can reach the pieces.

pub mod cli;
