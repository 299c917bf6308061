#!/usr/bin/env bash
# Holds LINKS WebRTC links open across several load-tool processes and gateways, because one
# process may hold only so many files (20,000 on the development machine): each gateway
# serves TOOLS load-tool processes of PER_TOOL links (2 x PER_TOOL agents) each.
#
#   scripts/link-knee.sh LINKS ENGINE HOLD_S [PER_TOOL=2500] [TOOLS_PER_GATEWAY=2]
#
# CALLS (environment, default 10) calls are made on each link, one at a time, before the hold.
# Needs release binaries (cargo build --release). Reports go to target/link-knee/LINKS-ENGINE/
# (one ioap.loadtest.v1 JSON per tool) and a summary line is printed. Every process it starts
# is stopped when it ends, however it ends.
set -euo pipefail

links=${1:?links}
engine=${2:?engine (webrtc-rs or str0m)}
hold=${3:?hold seconds}
per_tool=${4:-2500}
tools_per_gateway=${5:-2}

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release"
out="$root/target/link-knee/$links-$engine"
for b in ioap ioap-gateway; do
    [ -x "$bin/$b" ] || { echo "no $bin/$b: cargo build --release --workspace --bins" >&2; exit 2; }
done
rm -rf "$out" && mkdir -p "$out"

tools=$(((links + per_tool - 1) / per_tool))
gateways=$(((tools + tools_per_gateway - 1) / tools_per_gateway))
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

for g in $(seq 0 $((gateways - 1))); do
    port=$((8700 + g))
    "$bin/ioap-gateway" --listen "127.0.0.1:$port" --registrations-per-ip-per-min 0 \
        --rate-per-ip 0 --rate-per-did 0 --max-connections-per-ip 0 \
        >"$out/gateway-$g.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

tool_pids=()
for t in $(seq 0 $((tools - 1))); do
    mine=$((links - t * per_tool < per_tool ? links - t * per_tool : per_tool))
    g=$((t / tools_per_gateway))
    "$bin/ioap" loadtest --gateway "ws://127.0.0.1:$((8700 + g))/ws" --gateway-pid "${pids[$g]}" \
        --agents $((2 * mine)) --links "$mine" --calls "${CALLS:-10}" --concurrency 1 --duration 0 \
        --hold "$hold" --engine "$engine" --quiet --json --out "$out/tool-$t.json" \
        >"$out/tool-$t.log" 2>&1 &
    tool_pids+=($!)
    pids+=($!)
done
status=0
for pid in "${tool_pids[@]}"; do wait "$pid" || status=1; done

python3 - "$out" "$links" "$engine" "$tools" <<'PY'
import glob, json, sys
out, links, engine, tools = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
reports = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/tool-*.json"))]
def total(path):
    s = 0
    for r in reports:
        v = r
        for k in path:
            v = (v or {}).get(k)
        s += v or 0
    return s
held = [r["hold"] for r in reports if r.get("hold")]
cpu = sum(h["cpu_ms_per_link_per_s"] * h["links_at_start"] for h in held if h["cpu_ms_per_link_per_s"])
at_start = sum(h["links_at_start"] for h in held)
rss = [r["process"]["rss_per_link_kib"] for r in reports if r["process"].get("rss_per_link_kib")]
lat = [r["links"]["latency"] for r in reports if r.get("links")]
print(json.dumps({
    "links": links, "engine": engine, "tools": len(reports),
    "opened": total(["links", "succeeded"]),
    "calls_ok": total(["exec", "succeeded"]),
    "calls_per_s": round(total(["exec", "per_s"])),
    "setup_p50_ms": [round(l["p50_ms"]) for l in lat],
    "setup_p99_ms": [round(l["p99_ms"]) for l in lat],
    "held": at_start, "lost": sum(h["lost"] for h in held),
    "cpu_ms_per_link_per_s": round(cpu / at_start, 3) if at_start else None,
    "rss_per_link_kib": [round(x) for x in rss],
    "errors": [r.get("errors") for r in reports],
    "passed": len(reports) == tools and all(r.get("passed") for r in reports),
}))
PY
exit $status
