#!/usr/bin/env bash
# live_capture.sh - how many packets per second `podwire capture` sustains (benchmark, not a test).
#
# Two network namespaces joined by one veth pair (10.244.9.101 <-> 10.244.9.102, created here
# and removed on exit); iperf3 blasts 64-byte UDP datagrams from A to B at a series of target
# rates for DURATION seconds each; podwire captures B's end of the veth (entering B with
# --netns, as on a node) and reports frames received, kernel drops (PACKET_STATISTICS) and
# drops in its own queue. /usr/bin/time gives podwire's CPU time and peak RSS.
#
# Usage: sudo benches/live_capture.sh [RATES_PPS...]   (default: 50000 100000 200000 400000 0)
#        0 = unlimited (iperf3 -b 0). Needs: iproute2, iperf3, time (GNU), a release build
#        (cargo build --release; the binary is taken from $PODWIRE or target/release/podwire).
#        Traffic stays inside the two namespaces; each run is bounded by DURATION (10 s).
#
# Results on the 2-core CI machine (shared, so the sender, the kernel and podwire compete for
# the same two cores), podwire 0.1.0, pnet 0.35:
#   see the table printed by the script; numbers quoted in the task report.
set -euo pipefail

DURATION="${DURATION:-10}"
RATES=("$@")
if [[ ${#RATES[@]} -eq 0 ]]; then RATES=(50000 100000 200000 400000 0); fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PODWIRE="${PODWIRE:-${CARGO_TARGET_DIR:-$HERE/target}/release/podwire}"

if [[ $EUID -ne 0 ]]; then echo "live_capture.sh: run as root (creates namespaces)" >&2; exit 1; fi
for cmd in ip iperf3 /usr/bin/time; do
  command -v "$cmd" >/dev/null || { echo "live_capture.sh: missing $cmd (apt-get install -y iproute2 iperf3 time)" >&2; exit 1; }
done
[[ -x $PODWIRE ]] || { echo "live_capture.sh: no podwire binary at $PODWIRE (cargo build --release)" >&2; exit 1; }

A="pwbench$$a"; B="pwbench$$b"; TMP="$(mktemp -d)"; SERVER=""
cleanup() {
  set +e
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$A"; ip netns add "$B"
ip link add va netns "$A" type veth peer name vb netns "$B"
ip -n "$A" addr add 10.244.9.101/24 dev va; ip -n "$A" link set va up; ip -n "$A" link set lo up
ip -n "$B" addr add 10.244.9.102/24 dev vb; ip -n "$B" link set vb up; ip -n "$B" link set lo up
ip netns exec "$B" iperf3 -s -B 10.244.9.102 -p 5201 >/dev/null 2>&1 &
SERVER=$!
sleep 1

printf '%-10s %10s %12s %12s %10s %10s %10s %8s %9s\n' \
  "target/s" "sent/s" "captured/s" "captured" "kern.drop" "queue.drop" "lost" "cpu%" "maxRSS"
for rate in "${RATES[@]}"; do
  if [[ $rate == 0 ]]; then bw=0; else bw=$((rate * 64 * 8)); fi
  health="$TMP/health-$rate.jsonl"
  /usr/bin/time -f '%U %S %M' -o "$TMP/time-$rate" \
    "$PODWIRE" capture --headless --format jsonl --netns "/var/run/netns/$B" --interface vb \
      --duration $((DURATION + 3)) --health-file "$health" --health-interval 3600 \
      >/dev/null 2>"$TMP/podwire-$rate.err" &
  pw=$!
  sleep 1.5
  ip netns exec "$A" iperf3 -c 10.244.9.102 -p 5201 -u -l 64 -b "$bw" -t "$DURATION" -J \
    >"$TMP/iperf-$rate.json" 2>/dev/null || true
  wait "$pw" || { echo "podwire failed:"; cat "$TMP/podwire-$rate.err"; exit 1; }
  python3 - "$rate" "$DURATION" "$TMP/iperf-$rate.json" "$health" "$TMP/time-$rate" <<'EOF'
import json, sys
rate, dur, iperf, health, timef = sys.argv[1:]
dur = float(dur)
try:
    sent = json.load(open(iperf))["end"]["sum"]["packets"]
except Exception:
    sent = 0
h = [json.loads(l) for l in open(health) if l.strip()][-1]
captured = h["received"]
kd = h["kernel_drops"] or 0
qd = h["queue_drops"]
u, s, rss = open(timef).read().split()[-3:]
cpu = (float(u) + float(s)) / (dur + 3) * 100
lost = max(0, sent - (captured - 0))
print(f"{('max' if rate == '0' else rate):<10} {sent/dur:>10.0f} {captured/dur:>12.0f} {captured:>12} {kd:>10} {qd:>10} {lost:>10} {cpu:>8.0f} {int(rss)//1024:>6} MiB")
EOF
done
