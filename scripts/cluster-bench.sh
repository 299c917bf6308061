#!/usr/bin/env bash
# One gateway alone vs three gateways sharing a redis-server (agents spread round robin, so
# every link and relay pair crosses nodes), measured with `ioap loadtest` in one run on this
# machine. Needs redis-server and the built binaries (cargo build --bins). Prints one summary
# line per setup and leaves the JSON reports in $OUT (default: a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug}
AGENTS=${AGENTS:-2000}
LINKS=${LINKS:-10}
DURATION=${DURATION:-10}
OUT=${OUT:-$(mktemp -d)}
REDIS_PORT=${REDIS_PORT:-6390}
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

gateway() { # gateway PORT [extra flags…]
    local port=$1; shift
    "$BIN/ioap-gateway" --log-level error --listen "127.0.0.1:$port" --rate-per-did 0 --rate-per-ip 0 \
        --registrations-per-ip-per-min 0 --max-connections 20000 --max-connections-per-ip 0 "$@" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && return; sleep 0.05; done
    echo "gateway on $port did not start" >&2; exit 1
}

summary() { # summary NAME FILE
    python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
reg, rel, links = r["registration"], r["relay"] or {}, r["links"] or {}
lat = rel.get("latency") or {}
print(f"{name}: registered {reg['succeeded']}/{reg['requested']} at {reg['per_s']:.0f}/s; "
      f"links {links.get('succeeded')}/{links.get('requested')} setup p50 {(links.get('latency') or {}).get('p50_ms')} ms; "
      f"relay {rel.get('per_s', 0):.0f} frames/s, p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms; "
      f"passed={r['passed']}")
PY
}

common=(--agents "$AGENTS" --links "$LINKS" --calls 20 --duration "$DURATION" --ramp-per-s 0 --quiet --json)
# Paced: every pair sends 4 OFFERs a second, for latency below saturation.
paced=(--agents 1000 --links 0 --duration "$DURATION" --relay-rate 4 --quiet --json)

run() { # run NAME URLS
    "$BIN/ioap" loadtest --gateway "$2" "${common[@]}" --out "$OUT/$1.json" >/dev/null || true
    summary "$1, saturating" "$OUT/$1.json"
    "$BIN/ioap" loadtest --gateway "$2" "${paced[@]}" --out "$OUT/$1-paced.json" >/dev/null || true
    summary "$1, paced 4/s per pair" "$OUT/$1-paced.json"
}

single=$(free_port)
gateway "$single"
run single "ws://127.0.0.1:$single/ws"
cleanup; pids=()

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null &
pids+=($!)
sleep 0.3
urls=()
for node in 1 2 3; do
    port=$(free_port)
    gateway "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" --node-id "bench-$node"
    urls+=("ws://127.0.0.1:$port/ws")
done
run cluster "$(IFS=,; echo "${urls[*]}")"
echo "reports: $OUT"
