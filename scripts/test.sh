#!/usr/bin/env bash
# The project's test command: formatting, lints, every test of the workspace, then every SDK
# and CLI test again on the second WebRTC engine (IOAP_ENGINE picks the engine of agents that
# do not name one; docs/sdk.md, WebRTC engines).
# README.md § Testing names this script; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --doc --locked
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo nextest run --workspace --all-targets --locked --no-fail-fast
IOAP_ENGINE=str0m cargo nextest run -p ioap-client -p ioap --all-targets --locked --no-fail-fast
