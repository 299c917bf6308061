#!/usr/bin/env bash
# The project's test command: formatting, lints, every test of the workspace.
# README.md § Testing names this script; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --doc --locked
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo nextest run --workspace --all-targets --locked --no-fail-fast
