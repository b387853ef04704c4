#!/usr/bin/env bash
# record-demo.sh - re-record podwire's bundled demo capture (captures/demo.pcapng).
#
# Emulates one Kubernetes node with network namespaces: a "node" netns (pw-node)
# holding the CNI bridge pw-br0 (10.244.1.1/24, node podCIDR 10.244.1.0/24), one
# netns per "pod" on a veth pair attached to that bridge, and a fake cloud
# metadata service (169.254.169.254) routed through the node.  Real servers
# (python HTTP, redis-server, openssl s_server, a python DNS responder) answer
# real clients, and dumpcap records pw-br0 + frontend's host-side veth into one
# pcapng with TWO interfaces (frontend's packets appear on both: de-dup demo).
# Addresses match captures/demo-cluster.yaml exactly; see captures/README.md.
#
# Usage:  sudo captures/record-demo.sh [OUTPUT.pcapng]   (default: captures/demo.pcapng)
#
# Needs root (ip netns).  Installs nothing.  Needed Debian/Ubuntu packages:
#   iproute2        ip, ss
#   wireshark-common  dumpcap, capinfos   (pulled in by `tshark`, which you want anyway
#                                           to inspect the result)
#   python3         servers and clients (stdlib only)
#   redis-server    the carts-redis pod
#   openssl         self-signed cert + TLS server for the payment pod
#   procps          sysctl
#   e.g.  apt-get install -y iproute2 tshark python3 redis-server openssl procps
#
# Everything it creates is named pw-*; it removes leftovers from an earlier run
# first and tears everything down on exit (trap).  Traffic never leaves the
# namespaces it creates: no default route points outside pw-node, and pw-node
# itself has no link to the host.  All loops are bounded; a run takes ~10 s.
set -euo pipefail

OUT="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/demo.pcapng}"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

# ---------------------------------------------------------------- checks
if [[ $EUID -ne 0 ]]; then
  echo "record-demo.sh: must run as root (ip netns, veth, bridge)" >&2
  exit 1
fi
declare -A PKG=(
  [ip]=iproute2 [ss]=iproute2 [dumpcap]=wireshark-common [capinfos]=wireshark-common
  [python3]=python3 [redis-server]=redis-server [openssl]=openssl [sysctl]=procps
)
declare -A missing=()
for cmd in ip ss dumpcap capinfos python3 redis-server openssl sysctl; do
  command -v "$cmd" >/dev/null 2>&1 || missing[${PKG[$cmd]}]=1
done
if ((${#missing[@]})); then
  echo "record-demo.sh: missing tools; install: apt-get install -y ${!missing[*]}" >&2
  exit 1
fi
PY="$(command -v python3)"

# ---------------------------------------------------------------- topology
NODE=pw-node
BR=pw-br0
GW=10.244.1.1
# netns  | pod (namespace/name)                          | IP          | host veth
PODS=(
  "pw-coredns    kube-system/coredns-5d78c9869d-q7w2x       10.244.1.2   pwv-coredns"
  "pw-frontend   shop/frontend-6c9f8d7b5d-x7k2p             10.244.1.10  pwv-frontend"
  "pw-catalogue  shop/catalogue-7b9d4f6c88-m4t8z            10.244.1.11  pwv-catalogue"
  "pw-redis      shop/carts-redis-0                         10.244.1.12  pwv-redis"
  "pw-payment    shop/payment-84c6b5d9f7-h2v5n              10.244.1.13  pwv-payment"
  "pw-debug      monitoring/debug-toolbox-5f8b7c6d49-r9j4s  10.244.1.20  pwv-debug"
)
META_NS=pw-metadata
META_IP=169.254.169.254
ALL_NS=("$NODE" "$META_NS")
for p in "${PODS[@]}"; do read -r ns _ <<<"$p"; ALL_NS+=("$ns"); done

TMP=""
PIDS=()
CAP_PID=""

# MAC like the bridge CNI plugin makes them: 0a:58 + the IPv4 address.
mac_of() { local IFS=.; set -- $1; printf '0a:58:%02x:%02x:%02x:%02x' "$1" "$2" "$3" "$4"; }

cleanup() {
  local -    # keep `set +e` local to this function
  set +e
  if [[ -n "$CAP_PID" ]] && kill -0 "$CAP_PID" 2>/dev/null; then
    kill -INT "$CAP_PID"; wait "$CAP_PID" 2>/dev/null
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for ns in "${ALL_NS[@]}"; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
      # only processes inside namespaces this script created
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
    fi
  done
  sleep 0.3
  for ns in "${ALL_NS[@]}"; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null
    fi
  done
  if [[ -n "$TMP" && -d "$TMP" ]]; then rm -rf "$TMP"; fi
  return 0
}

cleanup            # leftovers of an earlier (interrupted) run
trap cleanup EXIT
trap 'exit 130' INT TERM

TMP="$(mktemp -d /tmp/podwire-demo.XXXXXX)"

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
quiet_v6_off() { nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true; }

ip netns add "$NODE"
quiet_v6_off "$NODE"
nsx "$NODE" sysctl -qw net.ipv4.ip_forward=1
nsx "$NODE" ip link set lo up
nsx "$NODE" ip link add "$BR" type bridge stp_state 0 mcast_snooping 0
nsx "$NODE" ip link set "$BR" address "$(mac_of $GW)"
nsx "$NODE" ip addr add "$GW/24" dev "$BR"
nsx "$NODE" ip link set "$BR" up

i=0
for p in "${PODS[@]}"; do
  read -r ns pod ip hv <<<"$p"
  i=$((i + 1))
  ip netns add "$ns"
  quiet_v6_off "$ns"
  nsx "$NODE" ip link add "$hv" type veth peer name eth0 netns "$ns"
  nsx "$NODE" ip link set "$hv" address "$(printf '0a:58:00:00:01:%02x' "$i")" master "$BR" up
  nsx "$ns" ip link set lo up
  nsx "$ns" ip link set eth0 address "$(mac_of "$ip")" up
  nsx "$ns" ip addr add "$ip/24" dev eth0
  nsx "$ns" ip route add default via "$GW" dev eth0
done

# fake cloud metadata endpoint, one routed hop behind the node (like a real cloud)
ip netns add "$META_NS"
quiet_v6_off "$META_NS"
nsx "$NODE" ip link add pwv-meta type veth peer name eth0 netns "$META_NS"
nsx "$NODE" ip link set pwv-meta address 0a:58:a9:fe:a9:01 up
nsx "$NODE" ip addr add 169.254.169.1/24 dev pwv-meta
nsx "$META_NS" ip link set lo up
nsx "$META_NS" ip link set eth0 address "$(mac_of $META_IP)" up
nsx "$META_NS" ip addr add "$META_IP/24" dev eth0
nsx "$META_NS" ip route add default via 169.254.169.1 dev eth0

# ---------------------------------------------------------------- programs
cat >"$TMP/servers.py" <<'PYEOF'
"""Tiny demo servers: catalogue HTTP (Basic auth), metadata HTTP, DNS responder."""
import base64, json, socket, struct, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

CATALOGUE_USER, CATALOGUE_PASS = "frontend", "s3cr3t-catalogue"

class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""
    def log_message(self, *a):
        pass
    def send(self, code, body, ctype="application/json", extra=()):
        data = body.encode()
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

class Catalogue(Quiet):
    server_version = "catalogue/1.4.2"
    def do_GET(self):
        if self.path == "/healthz":
            return self.send(200, "ok\n", "text/plain")
        want = "Basic " + base64.b64encode(f"{CATALOGUE_USER}:{CATALOGUE_PASS}".encode()).decode()
        if self.headers.get("Authorization") != want:
            return self.send(401, '{"error":"unauthorized"}\n',
                             extra=[("WWW-Authenticate", 'Basic realm="catalogue"')])
        if self.path == "/catalogue":
            return self.send(200, json.dumps([
                {"id": "sock-001", "name": "Holy", "price": 99.99},
                {"id": "sock-002", "name": "Crossed", "price": 17.32}]) + "\n")
        return self.send(404, '{"error":"not found"}\n')

class Metadata(Quiet):
    server_version = "EC2ws"
    DOCS = {
        "/latest/meta-data/": "ami-id\nhostname\niam/\ninstance-id\nlocal-ipv4\n",
        "/latest/meta-data/iam/security-credentials/": "pw-node-role",
        "/latest/meta-data/iam/security-credentials/pw-node-role": json.dumps({
            "Code": "Success", "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAPODWIREDEMO00000",
            "SecretAccessKey": "podwire/demo/not/a/real/secret/key0000000",
            "Token": "IQoJb3JpZ2luX2VjEPODWIREDEMO", "Expiration": "2030-01-01T00:00:00Z"}),
    }
    def do_GET(self):
        body = self.DOCS.get(self.path)
        if body is None:
            return self.send(404, "Not Found\n", "text/plain")
        return self.send(200, body, "text/plain")

# name -> A record (None = NXDOMAIN); svc names resolve to ClusterIPs,
# the headless StatefulSet service to the pod IP.
DNS_A = {
    "catalogue.shop.svc.cluster.local": "10.100.20.11",
    "payment.shop.svc.cluster.local": "10.100.20.13",
    "carts-redis.shop.svc.cluster.local": "10.244.1.12",
    "carts-redis-0.carts-redis.shop.svc.cluster.local": "10.244.1.12",
    "kube-dns.kube-system.svc.cluster.local": "10.96.0.10",
    "api.stripe.com": "203.0.113.10",        # external name (TEST-NET-3, nothing is sent there)
}

def dns_server(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 53))
    while True:
        q, peer = s.recvfrom(512)
        if len(q) < 12:
            continue
        tid, flags, qd = struct.unpack("!HHH", q[:6])
        pos, labels = 12, []
        while q[pos]:
            n = q[pos]; labels.append(q[pos + 1:pos + 1 + n].decode().lower()); pos += 1 + n
        pos += 1
        qtype, qclass = struct.unpack("!HH", q[pos:pos + 4]); pos += 4
        name = ".".join(labels)
        question = q[12:pos]
        local = name.endswith("cluster.local")
        rd = flags & 0x0100
        answers = b""
        if name in DNS_A:
            rcode = 0
            if qtype == 1:
                ttl = 30 if local else 300
                answers = struct.pack("!HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(DNS_A[name])
        else:
            rcode = 3
        rflags = 0x8000 | (0x0400 if local else 0) | rd | 0x0080 | rcode
        an = 1 if answers else 0
        s.sendto(struct.pack("!HHHHHH", tid, rflags, 1, an, 0, 0) + question + answers, peer)

if __name__ == "__main__":
    kind, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "dns":
        dns_server(ip)
    else:
        HTTPServer((ip, port), {"catalogue": Catalogue, "metadata": Metadata}[kind]).serve_forever()
PYEOF

cat >"$TMP/client.py" <<'PYEOF'
"""Demo clients.  Every socket binds a FIXED source port so the 5-tuples are
identical on every re-recording (see README.md)."""
import base64, socket, ssl, struct, sys, time

def tcp(src, sport, dst, dport, timeout=3.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    s.bind((src, sport))
    s.connect((dst, dport))
    return s

def recv_until(s, marker=None, limit=65536):
    buf = b""
    while len(buf) < limit:
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        if marker is not None and marker(buf):
            break
    return buf

def http_exchange(s, host, path, headers=()):
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: demo-client/1.0\r\nAccept: */*\r\n"
    for k, v in headers:
        req += f"{k}: {v}\r\n"
    s.sendall((req + "\r\n").encode())
    def done(b):
        if b"\r\n\r\n" not in b:
            return False
        head, body = b.split(b"\r\n\r\n", 1)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(body) >= int(line.split(b":")[1])
        return True
    return recv_until(s, done)

def cmd_dns(src, sport, server, *names_types):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sport = int(sport)
    s.bind((src, sport)); s.settimeout(2.0)
    tid = 0x1000 + sport % 0x1000
    for nt in names_types:
        name, qtype = nt.split("/")
        q = struct.pack("!HHHHHH", tid, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
        q += struct.pack("!HH", {"A": 1, "AAAA": 28}[qtype], 1)
        s.sendto(q, (server, 53))
        r, _ = s.recvfrom(512)
        print(f"dns {name}/{qtype}: rcode={r[3] & 15} answers={struct.unpack('!H', r[6:8])[0]}")
        tid += 1
        time.sleep(0.05)

def cmd_http(src, sport, dst, dport, host, *reqs):
    """reqs: PATH or PATH@user:password (Basic auth), all on ONE keep-alive connection."""
    s = tcp(src, int(sport), dst, int(dport))
    for r in reqs:
        path, _, cred = r.partition("@")
        hdrs = [("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())] if cred else []
        resp = http_exchange(s, host, path, hdrs)
        status = resp.split(b"\r\n", 1)[0].decode(errors="replace")
        print(f"http {dst}:{dport}{path}: {status}")
        time.sleep(0.05)
    s.close()

def cmd_redis(src, sport, dst, dport, password):
    s = tcp(src, int(sport), dst, int(dport))
    def resp(*args):
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            a = a.encode(); out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        r = recv_until(s, lambda b: b.endswith(b"\r\n"))
        print(f"redis {args[0]}: {r!r}")
    for cmd in (("AUTH", password),
                ("SET", "cart:1001", '{"items":[{"sku":"sock-001","qty":2}],"card_last4":"4242"}'),
                ("GET", "cart:1001"),
                ("QUIT",)):
        resp(*cmd)
    s.close()

def cmd_tls(src, sport, dst, dport, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE            # self-signed demo cert
    ctx.set_alpn_protocols(["http/1.1"])
    raw = tcp(src, int(sport), dst, int(dport))
    s = ctx.wrap_socket(raw, server_hostname=sni)
    print(f"tls {dst}:{dport} sni={sni}: {s.version()} {s.cipher()[0]}")
    s.sendall(b"GET /v1/charges HTTP/1.0\r\nHost: " + sni.encode() + b"\r\n\r\n")
    data = recv_until(s)
    status = data.split(b"\r\n", 1)[0]
    print(f"tls response: {status!r}")
    try:
        s.unwrap()
    except (ssl.SSLError, OSError):
        pass
    raw.close()

def cmd_scan(src, sport_base, dst, *ports):
    opened = []
    for i, p in enumerate(int(x) for x in ports):
        try:
            s = tcp(src, int(sport_base) + i, dst, p, timeout=0.5)
            opened.append(p); s.close()
        except OSError:
            pass
        time.sleep(0.02)
    print(f"scan {dst}: open={opened}")

if __name__ == "__main__":
    {"dns": cmd_dns, "http": cmd_http, "redis": cmd_redis, "tls": cmd_tls,
     "scan": cmd_scan}[sys.argv[1]](*sys.argv[2:])
PYEOF

# self-signed cert for the payment pod, made fresh on every run
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout "$TMP/payment.key" -out "$TMP/payment.crt" \
  -subj "/O=podwire demo/CN=payment.shop.svc.cluster.local" \
  -addext "subjectAltName=DNS:payment.shop.svc.cluster.local,DNS:payment.shop.svc,DNS:payment" \
  >/dev/null 2>&1

bg() { local ns=$1; shift; ip netns exec "$ns" "$@" >>"$TMP/servers.log" 2>&1 & PIDS+=($!); }

bg pw-coredns   "$PY" "$TMP/servers.py" dns 10.244.1.2 53
bg pw-catalogue "$PY" "$TMP/servers.py" catalogue 10.244.1.11 8080
bg "$META_NS"   "$PY" "$TMP/servers.py" metadata "$META_IP" 80
bg pw-redis     redis-server --bind 10.244.1.12 --port 6379 --requirepass carts-redis-pass \
                  --protected-mode no --save "" --appendonly no --dir "$TMP" --logfile "$TMP/redis.log"
bg pw-payment   openssl s_server -quiet -www -accept 8443 -cert "$TMP/payment.crt" -key "$TMP/payment.key"

wait_listen() {  # ns proto port
  local n
  for n in $(seq 1 50); do
    if nsx "$1" ss -Hln"$2" "sport = :$3" | grep -q .; then return 0; fi
    sleep 0.1
  done
  echo "record-demo.sh: server in $1 did not listen on $2/$3; log:" >&2
  cat "$TMP/servers.log" >&2
  exit 1
}
wait_listen pw-coredns u 53
wait_listen pw-catalogue t 8080
wait_listen "$META_NS" t 80
wait_listen pw-redis t 6379
wait_listen pw-payment t 8443

# ---------------------------------------------------------------- capture
rm -f "$OUT"
# -i pw-br0: everything crossing the node bridge (promiscuous, so bridged frames too)
# -i pwv-frontend: the frontend pod's host-side veth -> its packets are recorded twice
ip netns exec "$NODE" dumpcap -q -n -i "$BR" -i pwv-frontend -w "$OUT" 2>"$TMP/dumpcap.log" &
CAP_PID=$!
for n in $(seq 1 50); do
  grep -q "Capturing on" "$TMP/dumpcap.log" 2>/dev/null && [[ -s "$OUT" ]] && break
  kill -0 "$CAP_PID" 2>/dev/null || { cat "$TMP/dumpcap.log" >&2; exit 1; }
  sleep 0.1
done
sleep 1

C() { local ns=$1; shift; nsx "$ns" "$PY" "$TMP/client.py" "$@"; }
step() { echo "== $*"; }

step "1. frontend resolves its backends and an external name via coredns (UDP 53)"
C pw-frontend dns 10.244.1.10 40053 10.244.1.2 \
  catalogue.shop.svc.cluster.local/A payment.shop.svc.cluster.local/A \
  carts-redis.shop.svc.cluster.local/A api.stripe.com/A api.stripe.com/AAAA
sleep 0.3
step "2. kubelet-style probe: node 10.244.1.1 -> catalogue /healthz"
C "$NODE" http 10.244.1.1 45100 10.244.1.11 8080 10.244.1.11:8080 /healthz
sleep 0.3
step "3. frontend -> catalogue HTTP, first without, then with Authorization: Basic"
C pw-frontend http 10.244.1.10 41080 10.244.1.11 8080 catalogue.shop.svc.cluster.local \
  /catalogue "/catalogue@frontend:s3cr3t-catalogue"
sleep 0.3
step "4. frontend -> carts-redis plaintext RESP: AUTH, SET, GET, QUIT"
C pw-frontend redis 10.244.1.10 41379 10.244.1.12 6379 carts-redis-pass
sleep 0.3
step "5. frontend -> payment TLS with SNI payment.shop.svc.cluster.local"
C pw-frontend tls 10.244.1.10 41443 10.244.1.13 8443 payment.shop.svc.cluster.local
sleep 0.3
step "6. debug-toolbox (monitoring) DNS lookups, one NXDOMAIN"
C pw-debug dns 10.244.1.20 50053 10.244.1.2 \
  catalogue.shop.svc.cluster.local/A redis.shop.svc.cluster.local/A
sleep 0.3
step "7. debug-toolbox -> catalogue (cross-namespace, denied by policy)"
C pw-debug http 10.244.1.20 50080 10.244.1.11 8080 catalogue.shop.svc.cluster.local /admin
sleep 0.3
step "8. debug-toolbox -> 169.254.169.254:80 (cloud metadata, IMDSv1 credential grab)"
C pw-debug http 10.244.1.20 50169 "$META_IP" 80 "$META_IP" \
  /latest/meta-data/iam/security-credentials/ /latest/meta-data/iam/security-credentials/pw-node-role
sleep 0.3
step "9. debug-toolbox TCP connect scan of carts-redis (src ports 51000+i)"
C pw-debug scan 10.244.1.20 51000 10.244.1.12 \
  20 21 22 23 24 25 26 27 28 29 30 53 80 443 3306 5432 6379 8080 8443 9200
sleep 1

kill -INT "$CAP_PID"
wait "$CAP_PID" || true
CAP_PID=""
chmod 0644 "$OUT"
echo "== wrote $OUT"
capinfos -c -u -a -e -I "$OUT" 2>/dev/null | sed -n '1,40p' || true
