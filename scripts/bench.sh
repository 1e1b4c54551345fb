#!/usr/bin/env bash
# Benchmarks provenant against its peers on the same generated data in the
# same run and prints a Markdown table of ratios next to the targets (issue 6).
# See docs/bench.md for the workloads, what is measured and how to read it.
#
# Environment:
#   BENCH_DIR         where workloads and scratch files live
#                     (default /tmp/provenant-bench; reused when present)
#   BENCH_QUICK=1     workloads 10x smaller, for a smoke run
#   BENCH_TARGET_DIR  cargo target dir for the release build
#                     (default REPO/target, so an existing build is reused)
#   BENCH_PERF=1      also profile `provenant digest` on workload a with perf
#   BENCH_RUNS        timed runs per measurement, best is kept (default 3)
#   BENCH_WEBHOOK_ONLY=1  only the admission webhook section (at the end)
#   BENCH_KEYLESS_ONLY=1  only the keyless/Rekor section (at the end)
#   BENCH_SIGNER_ONLY=1   only the remote signer section (50 clients)
#   BENCH_SIGNER_CLIENTS, BENCH_SIGNER_REQUESTS  its clients (50) and
#                         signatures per client (40)
#   BENCH_KEYLESS_RUNS    attestations per keyless configuration (default 20)
#   BENCH_WS_DIR      where the finalize measure's workspaces go
#                     (default /dev/shm/provenant-bench-ws if it has room)
#
# The table goes to stdout; progress and tool logs go to stderr and
# BENCH_DIR/bench.log.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

bench_dir="${BENCH_DIR:-/tmp/provenant-bench}"
quick="${BENCH_QUICK:-0}"
runs="${BENCH_RUNS:-3}"
target_dir="${BENCH_TARGET_DIR:-$repo/target}"
cores="$(nproc)"
if [[ "$quick" == 1 ]]; then scale=10; mode=quick; else scale=1; mode=full; fi
data="$bench_dir/$mode"
scratch="$bench_dir/scratch"
log="$bench_dir/bench.log"
# The finalize measure copies workload a into fresh workspaces. They live on
# tmpfs when /dev/shm has room: on a disk file system the cp -r being
# measured varies 10x from run to run (on ext4 without a journal, creating
# files soon after many were deleted, by anyone, makes the inode allocator
# scan past recently deleted inodes: recently_deleted() in
# fs/ext4/ialloc.c), and tmpfs gives the cheapest, hence strictest, copy.
ws_root="${BENCH_WS_DIR:-}"
if [[ -z "$ws_root" ]]; then
    ws_root="$scratch/workspaces"
    if [[ -d /dev/shm && -w /dev/shm ]] &&
        (($(df -Pk /dev/shm | awk 'NR == 2 {print $4}') > 3 * 1024 * 1024)); then
        ws_root="/dev/shm/provenant-bench-ws"
    fi
fi
rm -rf "$scratch" "$ws_root"
mkdir -p "$bench_dir" "$scratch" "$ws_root"
: >"$log"
bench_started="$(date +%s)"
bench_nice="$(nice)"

say() { echo "bench: $*" >&2; }
# The first N lines, reading the rest: with pipefail, `| head` makes a
# writer with more to say die of SIGPIPE and errexit end the bench.
first() { awk -v n="$1" 'NR <= n'; }

# --- prerequisites -----------------------------------------------------------
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
[[ -x /usr/bin/time ]] || need_apt+=(time)
command -v python3 >/dev/null || need_apt+=(python3)
command -v sha256sum >/dev/null || need_apt+=(coreutils)
command -v xargs >/dev/null || need_apt+=(findutils)
if ((${#need_apt[@]})); then
    say "installing ${need_apt[*]}"
    sudo_=()
    [[ "$(id -u)" == 0 ]] || sudo_=(sudo)
    "${sudo_[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -qq "${need_apt[@]}" >&2
fi

say "interop venv (in-toto)"
venv_python="$("$repo/scripts/interop-venv.sh" | tail -n 1)"
in_toto_run="$(dirname "$venv_python")/in-toto-run"
[[ -x "$in_toto_run" ]] || { echo "bench: $in_toto_run missing" >&2; exit 1; }
in_toto_version="$("$in_toto_run" --version 2>&1 | tail -n 1)"

say "building provenant (release, $target_dir)"
build_t0="$(date +%s)"
CARGO_TARGET_DIR="$target_dir" nice -n 10 cargo build --release --quiet --bin provenant >&2
build_s=$(($(date +%s) - build_t0))
prov="$target_dir/release/provenant"

# --- admission webhook (issue 14) ---------------------------------------------
# `provenant webhook` on loopback with a throwaway certificate; the kpack
# fixture (tests/fixtures/admission/kpack-build-pod.json) posted by
# BENCH_WEBHOOK_CLIENTS (200) clients, each on its own keep-alive TLS
# connection as the API server keeps them (examples/webhook_load.rs):
#   closed loop: BENCH_WEBHOOK_REQUESTS (50) admissions per client, each sent
#     when the last was answered, so 200 are always in flight;
#   open loop: the 200 connections together send BENCH_WEBHOOK_RATE (200)
#     admissions per second on a fixed schedule, 10 each.
# Latency of the requests after each connection's first (the first also
# pays the TLS handshake: reported apart), the webhook's CPU per admission
# and peak RSS (VmHWM), and how busy the machine was. Printed as its own
# table at the end.
webhook_bench() {
    local clients="${BENCH_WEBHOOK_CLIENTS:-200}" per="${BENCH_WEBHOOK_REQUESTS:-50}"
    local rate="${BENCH_WEBHOOK_RATE:-200}"
    local d="$bench_dir/webhook" port pid load="$target_dir/release/examples/webhook_load"
    local fixture="$repo/tests/fixtures/admission/kpack-build-pod.json" c0 c1 m0 m1 t0 t1
    local cpu_all='/^cpu / {printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz}'
    local hz
    hz="$(getconf CLK_TCK)"
    say "webhook: building the load generator (examples/webhook_load.rs)"
    CARGO_TARGET_DIR="$target_dir" nice -n 10 cargo build --release --quiet --example webhook_load >&2
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth \
        -keyout "$d/tls.key" -out "$d/tls.crt" 2>>"$log"
    printf 'image: registry.example.com/provenant@sha256:%s\nsigning:\n  key:\n    secretName: provenant-signing-key\n' \
        "$(printf 'a%.0s' $(seq 64))" >"$d/config.yaml"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$prov" --log-level warn webhook --listen "127.0.0.1:$port" --tls-cert "$d/tls.crt" \
        --tls-key "$d/tls.key" --config "$d/config.yaml" 2>>"$log" &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    local url="https://127.0.0.1:$port/mutate"
    # One untimed round first: the code and allocator warm.
    "$load" "$url" "$d/tls.crt" "$fixture" 20 5 >/dev/null 2>>"$log" || true
    say "webhook: closed loop, $clients clients x $per admissions"
    WH_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
    c0="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
    m0="$(awk -v hz="$hz" "$cpu_all" /proc/stat)"
    t0="$(date +%s%N)"
    WH_CLOSED="$("$load" "$url" "$d/tls.crt" "$fixture" "$clients" "$per" 2>>"$log" || echo '{}')"
    t1="$(date +%s%N)"
    m1="$(awk -v hz="$hz" "$cpu_all" /proc/stat)"
    c1="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
    # The webhook's own CPU per admission, and the machine's CPU (all
    # processes, ours included) as a share of both cores while it ran.
    WH_CPU_MS="$(awk -v c="$((c1 - c0))" -v hz="$hz" -v n="$((clients * per))" 'BEGIN {printf "%.3f", 1000 * c / hz / n}')"
    WH_BUSY="$(awk -v a="$m0" -v b="$m1" -v t="$(((t1 - t0) / 1000000))" -v n="$cores" 'BEGIN {printf "%.0f", 100 * (b - a) / (t / 1000) / n}')"
    say "webhook: open loop, $clients connections, $rate admissions/s"
    WH_OPEN="$("$load" "$url" "$d/tls.crt" "$fixture" "$clients" 10 "$rate" 2>>"$log" || echo '{}')"
    WH_HWM="$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo NA)"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '%s\n%s\n' "$WH_CLOSED" "$WH_OPEN" >"$d/result.json"
    WH_CLIENTS="$clients"
    WH_PER="$per"
    WH_RATE="$rate"
}
webhook_table() {
    jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get(sys.argv[2], "NA"))' "$1" "$2"; }
    ms() { if [[ "$1" == NA ]]; then echo NA; else awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; fi; }
    local c="$WH_CLOSED" o="$WH_OPEN" v=N/A p99 n errors rps
    p99="$(jget "$c" p99_us)"; n="$(jget "$c" requests)"; errors="$(jget "$c" errors)"; rps="$(jget "$c" rps)"
    if [[ "$p99" != NA && "$errors" == 0 && "$n" != 0 ]]; then
        if awk -v u="$p99" 'BEGIN {exit !(u <= 5000)}'; then v=PASS; else v=MISS; fi
    fi
    echo
    echo "### Admission webhook: the kpack fixture, ${WH_CLIENTS} keep-alive TLS connections"
    echo
    echo "Machine load average at the start: ${WH_LOAD}; during the closed loop the machine's CPU (all processes, client and webhook included) was ${WH_BUSY}% of ${cores} cores."
    echo
    echo "| measure | value | target | result |"
    echo "|---|---:|---:|---|"
    echo "| closed loop, ${WH_CLIENTS} in flight: latency p50 / p99 / max | $(ms "$(jget "$c" p50_us)") / $(ms "$p99") / $(ms "$(jget "$c" max_us)") ms | p99 <= 5 ms | $v |"
    echo "| closed loop: throughput; admissions; errors | ${rps}/s; $n; $errors | info | |"
    if [[ "$rps" != NA && "$rps" != 0 ]]; then
        echo "| closed loop: queueing floor, ${WH_CLIENTS} in flight / throughput (Little's law) | $(awk -v c="$WH_CLIENTS" -v r="$rps" 'BEGIN {printf "%.2f", 1000 * c / r}') ms | info | |"
    fi
    echo "| webhook CPU per admission (parse, plan, patch, TLS) | ${WH_CPU_MS} ms | info | |"
    echo "| open loop, ${WH_RATE} admissions/s over ${WH_CLIENTS} connections: latency p50 / p99 / max | $(ms "$(jget "$o" p50_us)") / $(ms "$(jget "$o" p99_us)") / $(ms "$(jget "$o" max_us)") ms | info (p99 <= 5 ms) | |"
    echo "| open loop: admissions; errors | $(jget "$o" requests); $(jget "$o" errors) | info | |"
    echo "| first admission of a connection, TLS handshake included (closed loop) p50 / p99 | $(ms "$(jget "$c" first_p50_us)") / $(ms "$(jget "$c" first_p99_us)") ms | info | |"
    echo "| webhook peak RSS (VmHWM) | ${WH_HWM} MB | info | |"
}
# --- real builds (issue 19), BENCH_REAL=1 or BENCH_REAL_ONLY=1 ----------------
# What the sidecar costs a real build, not cp: each build runs in a fresh
# workspace, alternately without and with `provenant record` watching it
# (snapshot first, marker completion, a subject per file), BENCH_REAL_PAIRS
# (5) pairs, the order alternating so drift hits both sides. Builds:
#   cargo:   a crate with a dozen direct dependencies (a few dozen in all)
#            from the local registry, `cargo build --offline` into a target
#            directory inside the watched workspace;
#   npm:     `npm ci --offline` of the pinned tekton-lint lockfile from the
#            local npm cache into the watched node_modules;
#   archive: unpack a tarball of the local cargo registry's sources (~28k
#            files) and pack it again (many files, little CPU per byte).
# Reported per build: median wall time without / with and the overhead,
# the sidecar's CPU while the build ran as a share of the build's CPU,
# finalize latency (median) and the sidecar's peak RSS (max).
declare -A REAL
real_prepare() {
    local w="$1" d="$bench_dir/real/$w"
    mkdir -p "$d"
    case "$w" in
        cargo)
            mkdir -p "$d/src/src"
            cat >"$d/src/Cargo.toml" <<'TOML'
[package]
name = "bench-build"
version = "0.1.0"
edition = "2021"

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
regex = "1"
clap = { version = "4", features = ["derive"] }
toml = "0.9"
rayon = "1"
sha2 = "0.10"
hex = "0.4"
base64 = "0.22"
globset = "0.4"
uuid = { version = "1", features = ["v4"] }
time = { version = "0.3", features = ["formatting"] }
TOML
            cat >"$d/src/src/main.rs" <<'RS'
use clap::Parser;
use sha2::Digest;
#[derive(Parser)]
struct A { #[arg(default_value = "x")] s: String }
#[derive(serde::Serialize)]
struct O { h: String, r: bool, u: String, t: String }
fn main() {
    let a = A::parse();
    let re = regex::Regex::new("^[a-z]+$").unwrap();
    let h = hex::encode(sha2::Sha256::digest(a.s.as_bytes()));
    let _ = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &h);
    let _ = globset::Glob::new("*.rs").unwrap();
    let _: u64 = rayon::iter::ParallelIterator::sum(rayon::iter::IntoParallelIterator::into_par_iter(0..10u64));
    let _: toml::Value = toml::from_str("a = 1").unwrap();
    let o = O { h, r: re.is_match(&a.s), u: uuid::Uuid::new_v4().to_string(), t: time::OffsetDateTime::UNIX_EPOCH.to_string() };
    println!("{}", serde_json::to_string(&o).unwrap());
}
RS
            (cd "$d/src" && cargo generate-lockfile --offline --quiet) >>"$log" 2>&1
            ;;
        npm)
            "$repo/scripts/tekton-lint.sh" >>"$log" 2>&1
            cp "$target_dir/tekton-lint/package.json" "$target_dir/tekton-lint/package-lock.json" "$d/"
            ;;
        archive)
            [[ -f "$d/src.tar" ]] || tar -cf "$d/src.tar" -C "$(dirname "$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | first 1)")" . 2>>"$log"
            ;;
    esac
}
# The build itself, in workspace $2 (cwd), timed by /usr/bin/time into $3.
real_build() {
    local w="$1" ws="$2" timef="$3" d="$bench_dir/real/$1"
    case "$w" in
        cargo)
            cp -r "$d/src/." "$ws/"
            (cd "$ws" && /usr/bin/time -f '%e %U %S' -o "$timef" env CARGO_TARGET_DIR="$ws/target" \
                cargo build --offline --quiet) >>"$log" 2>&1
            ;;
        npm)
            cp "$d/package.json" "$d/package-lock.json" "$ws/"
            (cd "$ws" && /usr/bin/time -f '%e %U %S' -o "$timef" npm ci --offline --no-audit --no-fund --loglevel=error) >>"$log" 2>&1
            ;;
        archive)
            mkdir -p "$ws/x"
            /usr/bin/time -f '%e %U %S' -o "$timef" sh -c 'tar -xf "$1" -C "$2/x" && tar -cf "$2/out.tar" -C "$2/x" .' sh "$d/src.tar" "$ws" >>"$log" 2>&1
            ;;
    esac
}
sorted() { tr ' ' '\n' | grep -v '^$' | sort -n; }
median() { sorted | awk '{v[NR] = $1} END {if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range() { sorted | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "-" hi}'; }
real_runs() {
    local w="$1" pairs="${BENCH_REAL_PAIRS:-5}" i side ws st marker rec_pid
    local without="" with="" overhead_cpu="" fin="" rss=0 note="" cpu_without="" cpu_with=""
    real_prepare "$w"
    # On tmpfs with the finalize measure's workspaces (when /dev/shm has
    # room): on this machine's ext4 the same build's wall time moved by more
    # than the overhead being measured (writeback of the previous run).
    local root="$ws_root/real"
    for ((i = 0; i < pairs; i++)); do
        for side in $( ((i % 2)) && echo "with without" || echo "without with"); do
            rm -rf "$root"
            ws="$root/ws"
            st="$root/state"
            marker="$root/done"
            mkdir -p "$ws" "$st"
            if [[ "$side" == without ]]; then
                real_build "$w" "$ws" "$root/build.time" || { note="the build failed (see $log)"; break 2; }
                read -r wall u s <"$root/build.time"
                echo "real $w pair $i without: $wall $u $s (wall user sys, s)" >>"$log"
                without="$without $wall"
                cpu_without="$cpu_without $(calc "$u + $s")"
                continue
            fi
            "$prov" snapshot --state "$st" --workspace "$ws" 2>>"$log" || { note="snapshot failed"; break 2; }
            (
                /usr/bin/time -v -o "$root/record.time" "$prov" record --state "$st" --key "$key" \
                    --completion "marker:$marker" >"$root/record.out" 2>"$root/record.log" || echo failed >"$root/record.failed"
            ) &
            rec_pid=$!
            for ((k = 0; k < 300; k++)); do
                grep -q "ready: watching" "$root/record.log" 2>/dev/null && break
                sleep 0.1
            done
            real_build "$w" "$ws" "$root/build.time" || { note="the build failed under the sidecar (see $log)"; kill "$rec_pid" 2>/dev/null; break 2; }
            echo 0 >"$marker.tmp" && mv "$marker.tmp" "$marker"
            wait "$rec_pid" || true
            cat "$root/record.log" >>"$log"
            [[ -f "$root/record.failed" ]] && { note="record failed (see $log)"; break 2; }
            read -r wall u s <"$root/build.time"
            echo "real $w pair $i with: $wall $u $s (wall user sys, s)" >>"$log"
            with="$with $wall"
            cpu_with="$cpu_with $(calc "$u + $s")"
            local cpu_build_ms
            cpu_build_ms="$(grep -o 'cpu_build_ms=[0-9]*' "$root/record.log" | tail -n 1 | cut -d= -f2)"
            overhead_cpu="$overhead_cpu $(calc "100 * ${cpu_build_ms:-0} / 1000 / ($u + $s)")"
            fin="$fin $(grep -o 'finalize_ms=[0-9]*' "$root/record.log" | tail -n 1 | cut -d= -f2)"
            local r_kb
            r_kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$root/record.time")"
            ((r_kb > rss)) && rss="$r_kb"
            REAL[$w.files]="$(find "$ws" -type f | wc -l)"
        done
    done
    rm -rf "$root"
    local mw mwo
    mw="$(echo "$with" | median)"
    mwo="$(echo "$without" | median)"
    REAL[$w.without]="$mwo"
    REAL[$w.with]="$mw"
    REAL[$w.overhead]="$(if [[ "$mw" != NA && "$mwo" != NA ]]; then calc "100 * ($mw - $mwo) / $mwo"; else echo NA; fi)"
    REAL[$w.cpu]="$(echo "$overhead_cpu" | median)"
    # The build's own CPU: inotify's work on each write and close runs in
    # the writer, so watching costs the build CPU the sidecar never sees.
    REAL[$w.bcpu]="$(echo "$cpu_without" | median) s / $(echo "$cpu_with" | median) s"
    REAL[$w.range]="$(echo "$without" | range) s / $(echo "$with" | range) s"
    REAL[$w.fin]="$(echo "$fin" | median)"
    REAL[$w.rss]="$(calc "$rss / 1024")"
    REAL[$w.note]="$note"
}
real_table() {
    echo
    echo "### Real builds, without and with the sidecar (${BENCH_REAL_PAIRS:-5} pairs, medians)"
    echo
    echo "| build | files in the workspace | wall without / with (range) | overhead | build's own CPU without / with | sidecar CPU during the build / build CPU | finalize | sidecar peak RSS |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    local w tgt_o tgt_c
    for w in cargo npm archive; do
        case "$w" in
            cargo) tgt_o="<= 1%"; tgt_c="<= 3%" ;;
            npm) tgt_o="<= 3%"; tgt_c="info" ;;
            archive) tgt_o="info"; tgt_c="info" ;;
        esac
        if [[ -n "${REAL[$w.note]:-}" ]]; then
            echo "| $w | N/A: ${REAL[$w.note]} | | | | | | |"
            continue
        fi
        echo "| $w | ${REAL[$w.files]:-NA} | ${REAL[$w.without]} s / ${REAL[$w.with]} s (${REAL[$w.range]}) | ${REAL[$w.overhead]}% (target $tgt_o) | ${REAL[$w.bcpu]} | ${REAL[$w.cpu]}% (target $tgt_c) | ${REAL[$w.fin]} ms (target <= 100 ms) | ${REAL[$w.rss]} MB |"
    done
}
if [[ "${BENCH_REAL_ONLY:-0}" == 1 ]]; then
    rm -f "$scratch/k.key" "$scratch/k.pub"
    "$prov" keygen --unencrypted --output-prefix "$scratch/k" 2>>"$log"
    key="$scratch/k.key"
    calc() {
        if [[ "$1" == *NA* ]]; then echo NA; return; fi
        awk "BEGIN {printf \"%.2f\", $1}"
    }
    for w in cargo npm archive; do
        say "real build: $w"
        real_runs "$w"
    done
    real_table
    exit 0
fi


# --- keyless signing and transparency log (issue 15) -------------------------
# What Fulcio, Rekor and a timestamp authority add to one attestation:
# `provenant attest` of one small file, BENCH_KEYLESS_RUNS (20) times in
# each configuration, against @sigstore/mock (the sigstore-js project's mock
# Fulcio, Rekor and TSA) served on loopback by
# tests/interop/sigstore_mock_server.mjs:
#   key                      a key file, nothing else (the baseline)
#   key + Rekor              the same key, the envelope logged in Rekor
#   keyless + Rekor          a fresh key certified by Fulcio, logged in Rekor
#   keyless + Rekor + TSA    and an RFC 3161 timestamp
# Wall time of the whole command (process start to exit) p50 / p90, and
# from its log describe_sign_ms (signing; keyless: key pair, Fulcio
# certificate, signature) and witness_ms (Rekor, TSA). Loopback has no
# network latency: against real services add their round trips (one to
# Fulcio, one to Rekor, one to the TSA). Needs Node.js (scripts/sigstore-js.sh
# installs the packages); without it the section says so.
keyless_bench() {
    local n="${BENCH_KEYLESS_RUNS:-20}" d="$bench_dir/keyless" url pid
    KL_N="$n"
    KL_NOTE=""
    mkdir -p "$d"
    if ! command -v node >/dev/null; then
        KL_NOTE="node not found"
        return
    fi
    local js_dir
    if ! js_dir="$("$repo/scripts/sigstore-js.sh" 2>>"$log" | tail -n 1)"; then
        KL_NOTE="scripts/sigstore-js.sh failed (see $log)"
        return
    fi
    rm -f "$d/url"
    (sleep 100000 | SIGSTORE_JS_DIR="$js_dir" node "$repo/tests/interop/sigstore_mock_server.mjs" \
        "$d/trusted_root.json" >"$d/url" 2>>"$log") &
    pid=$!
    for _ in $(seq 100); do
        [[ -s "$d/url" ]] && break
        sleep 0.1
    done
    url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$d/url" 2>/dev/null || true)"
    if [[ -z "$url" ]]; then
        KL_NOTE="the mock did not start (see $log)"
        kill "$pid" 2>/dev/null || true
        return
    fi
    python3 - "$d/token" <<'PY'
import base64, json, sys, time
e = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
claims = {"iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:bench:builder",
          "aud": ["sigstore"], "exp": int(time.time()) + 86400}
open(sys.argv[1], "w").write(e(b'{"alg":"none"}') + "." + e(json.dumps(claims).encode()) + ".")
PY
    mkdir -p "$d/out"
    echo "keyless bench" >"$d/out/app.bin"
    [[ -f "$d/k.key" ]] || "$prov" --log-level warn keygen --unencrypted -o "$d/k" >>"$log" 2>&1
    local -a cfg_names=("key" "key + Rekor" "keyless + Rekor" "keyless + Rekor + TSA")
    local -a cfg_args=(
        "--key $d/k.key"
        "--key $d/k.key --rekor-url $url"
        "--fulcio-url $url --identity-token $d/token --rekor-url $url"
        "--fulcio-url $url --identity-token $d/token --rekor-url $url --tsa-url $url"
    )
    declare -gA KL
    local i c t0 wall
    for c in 0 1 2 3; do
        say "keyless: ${cfg_names[$c]}, $n attestations"
        : >"$d/times.$c"
        for ((i = 0; i < n; i++)); do
            t0="$(date +%s%N)"
            # shellcheck disable=SC2086
            if ! "$prov" attest --product "$d/out" -o "$d/att.jsonl" --bundle "$d/att.sigstore.json" \
                ${cfg_args[$c]} 2>"$d/attest.log"; then
                cat "$d/attest.log" >>"$log"
                KL_NOTE="${cfg_names[$c]}: attest failed (see $log)"
                break
            fi
            wall=$((($(date +%s%N) - t0) / 1000))
            echo "$wall $(grep -o 'describe_sign_ms=[0-9]*' "$d/attest.log" | cut -d= -f2) $(grep -o 'witness_ms=[0-9]*' "$d/attest.log" | cut -d= -f2)" >>"$d/times.$c"
        done
        KL[$c]="$(python3 - "$d/times.$c" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
if not rows:
    print("NA NA NA NA"); sys.exit()
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
wall = [int(r[0]) / 1000 for r in rows]
sign = [int(r[1]) for r in rows if len(r) > 1]
wit = [int(r[2]) for r in rows if len(r) > 2]
print(f"{pct(wall, 50):.1f} {pct(wall, 90):.1f} {statistics.median(sign) if sign else 'NA'} {statistics.median(wit) if wit else 'NA'}")
PY
)"
    done
    KL_NAMES=("${cfg_names[@]}")
    kill "$pid" 2>/dev/null || true
    pkill -P "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
keyless_table() {
    echo
    echo "### Keyless signing and the transparency log: one attestation, against @sigstore/mock on loopback"
    echo
    if [[ -n "$KL_NOTE" && -z "${KL[0]:-}" ]]; then
        echo "N/A: $KL_NOTE"
        return
    fi
    [[ -n "$KL_NOTE" ]] && echo "Note: $KL_NOTE" && echo
    echo "$KL_N attestations per configuration (\`provenant attest\` of one small file, envelope and bundle written)."
    echo
    echo "| configuration | wall p50 / p90 | sign (median) | witness: Rekor, TSA (median) | overhead over a key file (p50) |"
    echo "|---|---:|---:|---:|---:|"
    local base c w50 w90 sg wi
    read -r base _ _ _ <<<"${KL[0]}"
    for c in 0 1 2 3; do
        read -r w50 w90 sg wi <<<"${KL[$c]:-NA NA NA NA}"
        echo "| ${KL_NAMES[$c]} | $w50 / $w90 ms | $sg ms | $wi ms | $(if [[ "$w50" == NA || "$base" == NA ]]; then echo NA; else awk -v a="$w50" -v b="$base" 'BEGIN {printf "%+.1f ms", a - b}'; fi) |"
    done
}
# --- remote signer (issue 15, item 6) ----------------------------------------
# `provenant signer` over TLS on loopback, BENCH_SIGNER_CLIENTS (50) clients
# on keep-alive connections, each asking BENCH_SIGNER_REQUESTS (40) times
# for a signature of a real statement (closed loop: 50 always in flight), by
# examples/signer_load.rs, in both ways a sidecar authenticates:
#   service-account identity: every client a pod of its own with an ES256
#     token of the bench's issuer (--oidc-jwks), its statement naming that
#     pod (the signer verifies the JWT, the pod and the builder id);
#   shared token: one bearer token, the signer's --builder-id;
# and, in the same run, local signing (`--key`): the same statement signed
# in-process by 50 tasks sharing the machine's cores. Every signature the
# signer returns is verified; a request counts as an error otherwise.
# Latency of the signatures after each client's first (the first also pays
# the TLS handshake: reported apart), throughput, the signer's CPU per
# signature and peak RSS. The signer's audit log (one JSON line per
# signature) goes to a file, as in a cluster it goes to stdout.
signer_bench() {
    local clients="${BENCH_SIGNER_CLIENTS:-50}" per="${BENCH_SIGNER_REQUESTS:-40}"
    local d="$bench_dir/signer" port pid load="$target_dir/release/examples/signer_load" c0 c1 hz
    local iss="https://kubernetes.default.svc.cluster.local" builder="https://ci.example.com/bench"
    hz="$(getconf CLK_TCK)"
    SG_CLIENTS="$clients"
    SG_PER="$per"
    say "signer: building the load generator (examples/signer_load.rs)"
    CARGO_TARGET_DIR="$target_dir" nice -n 10 cargo build --release --quiet --example signer_load >&2
    rm -rf "$d"
    mkdir -p "$d/out"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth \
        -keyout "$d/tls.key" -out "$d/tls.crt" 2>>"$log"
    "$prov" --log-level warn keygen --unencrypted -o "$d/k" >>"$log" 2>&1
    echo "signer bench" >"$d/out/app.bin"
    "$prov" --log-level warn attest --product "$d/out" --builder-id "$builder" --key "$d/k.key" \
        -o "$d/statement.intoto.jsonl" 2>>"$log"
    "$load" issuer "$d/issuer.pk8" "$d/jwks.json"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/token"
    declare -gA SG
    SG[local]="$("$load" local "$d/k.key" "$d/statement.intoto.jsonl" "$clients" "$per" 2>>"$log" || echo '{}')"
    local mode
    for mode in identity token; do
        port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
        local -a auth
        if [[ "$mode" == identity ]]; then
            auth=(--oidc-issuer "$iss" --oidc-jwks "$d/jwks.json" --builder "bench=$builder")
        else
            auth=(--token-file "$d/token" --builder-id "$builder")
        fi
        "$prov" --log-level warn signer --key "$d/k.key" --listen "127.0.0.1:$port" \
            --tls-cert "$d/tls.crt" --tls-key "$d/tls.key" "${auth[@]}" \
            >"$d/audit.$mode.jsonl" 2>>"$log" &
        pid=$!
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
        local -a creds
        if [[ "$mode" == identity ]]; then
            creds=(identity "$d/issuer.pk8" "$iss" provenant-signer bench builder)
        else
            creds=(token "$d/token")
        fi
        say "signer: $mode, $clients clients x $per signatures"
        # One untimed round first: the code and allocator warm.
        "$load" remote "https://127.0.0.1:$port" "$d/tls.crt" "$d/k.pub" "$d/statement.intoto.jsonl" \
            5 5 "${creds[@]}" >/dev/null 2>>"$log" || true
        c0="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
        SG[$mode]="$("$load" remote "https://127.0.0.1:$port" "$d/tls.crt" "$d/k.pub" \
            "$d/statement.intoto.jsonl" "$clients" "$per" "${creds[@]}" 2>>"$log" || echo '{}')"
        c1="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
        SG[$mode.cpu]="$(awk -v c="$((c1 - c0))" -v hz="$hz" -v n="$((clients * per))" 'BEGIN {printf "%.3f", 1000 * c / hz / n}')"
        SG[$mode.hwm]="$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo NA)"
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        SG[$mode.audit]="$(wc -l <"$d/audit.$mode.jsonl")"
    done
    printf '%s\n%s\n%s\n' "${SG[local]}" "${SG[identity]}" "${SG[token]}" >"$d/result.json"
}
signer_table() {
    jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get(sys.argv[2], "NA"))' "$1" "$2"; }
    ms() { if [[ "$1" == NA ]]; then echo NA; else awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; fi; }
    echo
    echo "### Remote signer: ${SG_CLIENTS} concurrent clients, ${SG_PER} signatures each, against local signing"
    echo
    echo "| signing | throughput | latency p50 / p99 / max | first signature of a client (TLS handshake) p50 / p99 | errors | signer CPU per signature | signer peak RSS | audit lines |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    local m r label
    for m in local identity token; do
        r="${SG[$m]:-{\}}"
        case "$m" in
        local) label="local (\`--key\`, in-process)" ;;
        identity) label="signer, service-account identity (ES256 token, pod checked)" ;;
        token) label="signer, shared token" ;;
        esac
        local first="$(ms "$(jget "$r" first_p50_us)") / $(ms "$(jget "$r" first_p99_us)") ms"
        # Locally there is no connection: a client's first signature only
        # waits for the thread pool to start.
        [[ "$m" == local ]] && first="n/a"
        echo "| $label | $(jget "$r" rps)/s | $(ms "$(jget "$r" p50_us)") / $(ms "$(jget "$r" p99_us)") / $(ms "$(jget "$r" max_us)") ms | $first | $(jget "$r" errors) | ${SG[$m.cpu]:-n/a} ms | ${SG[$m.hwm]:-n/a} MB | ${SG[$m.audit]:-n/a} |"
    done
}
if [[ "${BENCH_SIGNER_ONLY:-0}" == 1 ]]; then
    signer_bench
    signer_table
    exit 0
fi
if [[ "${BENCH_WEBHOOK_ONLY:-0}" == 1 ]]; then
    webhook_bench
    webhook_table
    exit 0
fi
if [[ "${BENCH_KEYLESS_ONLY:-0}" == 1 ]]; then
    keyless_bench
    keyless_table
    exit 0
fi

# --- workloads ---------------------------------------------------------------
# Deterministic (fixed seeds, random.Random.randbytes), one Python process.
GEN_VERSION="gen-v1"
generate() {
    local kind="$1" dir="$2"
    local stamp="$data/$kind.complete"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$GEN_VERSION scale=$scale" ]]; then
        say "workload $kind: reusing $dir"
        return
    fi
    say "workload $kind: generating $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    python3 - "$kind" "$dir" "$scale" <<'PY'
import os, random, sys

kind, root, scale = sys.argv[1], sys.argv[2], int(sys.argv[3])

def write(path, data):
    with open(path, "wb") as f:
        f.write(data)

if kind == "a":
    # node_modules-like: 2000 packages x 50 files x 4 KiB; every 10th package
    # is scoped, every 7th is nested under its predecessor's node_modules.
    rng = random.Random(0xA)
    packages = 2000 // scale
    layout = (["package.json", "README.md", "LICENSE", "index.js"]
              + [f"lib/mod{k}.js" for k in range(20)]
              + [f"lib/internal/util{k}.js" for k in range(10)]
              + [f"dist/bundle{k}.js" for k in range(10)]
              + [f"dist/esm/chunk{k}.mjs" for k in range(6)])
    assert len(layout) == 50
    where = {}
    for i in range(packages):
        name = f"@scope{i % 37}/pkg{i}" if i % 10 == 0 else f"pkg{i}"
        if i % 7 == 3 and i > 0:
            base = os.path.join(where[i - 1], "node_modules", name)
        else:
            base = os.path.join(root, "node_modules", name)
        where[i] = base
        for d in ("lib/internal", "dist/esm"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        for rel in layout:
            write(os.path.join(base, rel), rng.randbytes(4096))
elif kind == "b":
    # 4 files of 256 MiB.
    rng = random.Random(0xB)
    size = (256 << 20) // scale
    chunk = 8 << 20
    for i in range(4):
        with open(os.path.join(root, f"blob{i}.bin"), "wb") as f:
            left = size
            while left > 0:
                n = min(chunk, left)
                f.write(rng.randbytes(n))
                left -= n
elif kind == "c":
    # Mixed source tree: ~20k files, sizes log-uniform in 100 B..200 KiB,
    # directories up to 12 levels below the root.
    rng = random.Random(0xC)
    files = 20000 // scale
    words = ["src", "lib", "internal", "pkg", "core", "util", "test", "api",
             "impl", "gen", "proto", "ui", "net", "io", "cmd", "docs"]
    dirs = [("", 0)]
    chain = ""
    for depth in range(1, 13):  # make sure depth 12 exists
        chain = os.path.join(chain, f"{words[depth % len(words)]}{depth}")
        dirs.append((chain, depth))
    while len(dirs) < max(40, 1500 // scale):
        parent, depth = rng.choice(dirs)
        if depth >= 12:
            continue
        name = f"{rng.choice(words)}{rng.randrange(1000)}"
        dirs.append((os.path.join(parent, name), depth + 1))
    for d, _ in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    exts = ["c", "h", "rs", "go", "py", "js", "ts", "md", "json", "txt", "png", "so"]
    lo, hi = 100, 200 << 10
    import math
    for n in range(files):
        d, _ = rng.choice(dirs)
        size = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        write(os.path.join(root, d, f"f{n}.{rng.choice(exts)}"), rng.randbytes(size))
else:
    sys.exit(f"unknown workload {kind}")
PY
    echo "$GEN_VERSION scale=$scale" >"$stamp"
}
gen_t0="$(date +%s)"
generate a "$data/a"
generate b "$data/b"
generate c "$data/c"
gen_s=$(($(date +%s) - gen_t0))

A="$data/a"
B="$data/b"
C="$data/c"
count_files() { find "$1" -type f | wc -l; }
count_bytes() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%d", s}'; }

say "keys"
rm -f "$scratch/k.key" "$scratch/k.pub"
"$prov" keygen --unencrypted --output-prefix "$scratch/k" 2>>"$log"
key="$scratch/k.key"

# --- timing helpers ----------------------------------------------------------
now_ns() { date +%s%N; }
# quiet CMD...: runs it, output to the log; on failure notes it there.
quiet() {
    "$@" >/dev/null 2>>"$log" && return 0
    echo "bench: failed: $*" >>"$log"
    return 1
}
# timed WARMUPS RUNS CMD...: the best wall time of RUNS runs after WARMUPS
# untimed ones, in seconds, or "NA" if any run fails.
timed() {
    local warmups="$1" n="$2" best="" t0 dt
    shift 2
    for ((i = 0; i < warmups; i++)); do quiet "$@" || { echo NA; return; }; done
    for ((i = 0; i < n; i++)); do
        t0="$(now_ns)"
        quiet "$@" || { echo NA; return; }
        dt=$(($(now_ns) - t0))
        if [[ -z "$best" || "$dt" -lt "$best" ]]; then best="$dt"; fi
    done
    awk -v ns="$best" 'BEGIN {printf "%.3f", ns / 1e9}'
}
# best_of CMD...: one warm-up run, then $runs timed runs, best kept.
best_of() { timed 1 "$runs" "$@"; }
# once CMD...: one timed run without warm-up, for the slow Python peer
# (seconds per run; the page cache is already warm from the runs before it
# on the same data, and run-to-run noise is small against its duration).
once() { timed 0 1 "$@"; }

prov_digest() { "$prov" --log-level warn digest "$1"; }
prov_attest() { "$prov" --log-level warn attest --product "$1" --key "$key" -o "$scratch/prov.intoto.jsonl"; }
intoto() {
    mkdir -p "$scratch/intoto"
    "$in_toto_run" --quiet --step-name bench --signing-key "$key" \
        --metadata-directory "$scratch/intoto" --base-path "$1" --materials . --no-command
}
par_sha256sum() { find "$1" -type f -print0 | xargs -0 -P"$cores" -n 256 sha256sum; }

# calc EXPR: awk arithmetic on numbers; NA in, NA out.
calc() {
    local expr="$1"
    if [[ "$expr" == *NA* ]]; then echo NA; return; fi
    awk "BEGIN {printf \"%.2f\", $expr}"
}
# verdict VALUE OP TARGET -> PASS / MISS / N/A
verdict() {
    if [[ "$1" == NA || "$1" == N/A ]]; then echo "N/A"; return; fi
    if awk -v v="$1" -v t="$3" "BEGIN {exit !(v $2 t)}"; then echo PASS; else echo MISS; fi
}
fmt_s() { if [[ "$1" == NA ]]; then echo "N/A"; else echo "$1 s"; fi; }

# --- other load on the machine -------------------------------------------------
# Everything below is timed against whatever else runs on the machine, and
# processes in other PID namespaces do not even show in ps. /proc/stat counts
# them all: wait (up to BENCH_IDLE_WAIT seconds) for a quiet moment, and
# report how much CPU others used while we measured.
clk_tck="$(getconf CLK_TCK)"
machine_cpu_s() { awk -v hz="$clk_tck" '/^cpu / {printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat; }
# Time the hypervisor gave our virtual CPUs to someone else.
steal_s() { awk -v hz="$clk_tck" '/^cpu / {printf "%.2f", $9 / hz}' /proc/stat; }
# CPU seconds of this shell and every child it waited for, saved to FILE.
# Call it directly, not in $(...): a subshell would report its own times.
own_cpu_to() {
    times >"$1"
}
cpu_s_of() { awk '{for (i = 1; i <= NF; i++) {split($i, p, "m"); sub(/s$/, "", p[2]); t += p[1] * 60 + p[2]}} END {printf "%.2f", t}' "$1"; }
# Quiet means 5 consecutive 2-second samples under 10% (a build pausing
# between two crates is not quiet).
idle_wait="${BENCH_IDLE_WAIT:-60}"
waited=0
quiet=0
while :; do
    c0="$(machine_cpu_s)"
    sleep 2
    busy_pct="$(awk -v a="$c0" -v b="$(machine_cpu_s)" -v n="$cores" 'BEGIN {printf "%.0f", 100 * (b - a) / (2 * n)}')"
    waited=$((waited + 2))
    if ((busy_pct <= 10)); then quiet=$((quiet + 1)); else quiet=0; fi
    if ((quiet >= 5)); then break; fi
    if ((waited >= idle_wait)); then
        say "machine still ${busy_pct}% busy after ${waited}s; measuring anyway"
        break
    fi
    if ((quiet == 0)); then
        say "machine ${busy_pct}% busy with other work; waiting for it to settle (${waited}/${idle_wait}s)"
    fi
done
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
measure_t0="$(now_ns)"
machine_cpu0="$(machine_cpu_s)"
steal0="$(steal_s)"
own_cpu_to "$scratch/times.0"

# --- openssl ceiling ---------------------------------------------------------
say "openssl speed (single core, then -multi $cores)"
ossl_k="$(openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null | awk '$1 == "sha256" {sub(/k$/, "", $2); print $2}' | tail -n 1)"
ossl_core="$(calc "$ossl_k / 1000")" # MB/s, 1 MB = 10^6 bytes
ossl_ceiling="$(calc "$ossl_core * $cores")"
ossl_multi_k="$(openssl speed -multi "$cores" -evp sha256 -bytes 16384 -seconds 3 2>/dev/null | awk '$1 == "sha256" {sub(/k$/, "", $2); print $2}' | tail -n 1)"
ossl_multi="$(calc "${ossl_multi_k:-NA} / 1000")"

# --- tree hashing ------------------------------------------------------------
declare -A T FILES BYTES
for w in a b c; do
    case "$w" in a) dir="$A" ;; b) dir="$B" ;; c) dir="$C" ;; esac
    FILES[$w]="$(count_files "$dir")"
    BYTES[$w]="$(count_bytes "$dir")"
    say "workload $w: provenant digest"
    T[$w.digest]="$(best_of prov_digest "$dir")"
    say "workload $w: provenant attest"
    T[$w.attest]="$(best_of prov_attest "$dir")"
    say "workload $w: parallel sha256sum"
    T[$w.sha]="$(best_of par_sha256sum "$dir")"
    say "workload $w: in-toto-run"
    T[$w.intoto]="$(once intoto "$dir")"
done

# --- finalize latency (snapshot + record --completion marker:FILE) -------------
# One run: an empty workspace, `provenant snapshot`, `provenant record`
# watching it, `cp -r` of workload a into it as "the build", then the
# marker (atomically, with the exit code). record's stdout (the pod log
# line, 22 MB with 100k subjects) goes to a file on the same tmpfs as the
# workspace: in a pod it is a pipe to the container runtime, and a file on
# ext4 would add the page-cache writeback of someone else's disk to our
# latency.
declare -A FIN
fin_marker="$scratch/build.done"
# A command put in front of `provenant record` (the profiler, below).
rec_wrap=()
# finalize_runs MODE [LABEL [RUNS]]: results go to FIN[LABEL.*].
finalize_runs() {
    local mode="$1" label="${2:-$1}" runs="${3:-$runs}"
    local best_ms=NA best_wall=NA rss_max=NA cpu_build_max=NA cpu_total_max=NA phases="" note=""
    local r fin_ws fin_state rec_pid wall_ms ms rss_kb cpu_build cpu_total cp_u cp_s cp_e cp_cpu
    for ((r = 0; r < runs; r++)); do
        # A fresh workspace per run (see ws_root above).
        fin_ws="$ws_root/ws.$mode.$r"
        fin_state="$ws_root/state.$mode.$r"
        # Only the last workspace is kept (for the post-hoc measures).
        rm -rf "$ws_root"/ws.* "$ws_root"/state.*
        rm -f "$fin_marker" "$scratch"/record.* "$ws_root/record.out"
        mkdir -p "$fin_ws" "$fin_state"
        if ! "$prov" snapshot --state "$fin_state" --workspace "$fin_ws" 2>>"$log"; then
            note="snapshot failed (see $log)"
            break
        fi
        local how=(--products-as "$mode")
        # One file of the 100k chosen as the subject, the rest one dirHash.
        [[ "$mode" == subject ]] && how=(--products-as files --subject "a/$subject_rel")
        (
            timeout 300 /usr/bin/time -v -o "$scratch/record.time" "${rec_wrap[@]}" "$prov" record --state "$fin_state" \
                --key "$key" --completion "marker:$fin_marker" "${how[@]}" \
                >"$ws_root/record.out" 2>"$scratch/record.log" || echo "$?" >"$scratch/record.failed"
            now_ns >"$scratch/record.exit_ns"
        ) &
        rec_pid=$!
        for ((i = 0; i < 300; i++)); do
            grep -q "ready: watching" "$scratch/record.log" 2>/dev/null && break
            [[ -f "$scratch/record.exit_ns" ]] && break
            sleep 0.1
        done
        if ! grep -q "ready: watching" "$scratch/record.log" 2>/dev/null; then
            note="record never became ready (see $scratch/record.log)"
            kill "$rec_pid" 2>/dev/null || true
            wait "$rec_pid" 2>/dev/null || true
            break
        fi
        /usr/bin/time -f '%U %S %e' -o "$scratch/cp.time" cp -r "$A" "$fin_ws/"
        # The build is over: the marker appears atomically, with the exit code.
        echo 0 >"$fin_marker.tmp"
        marker_ns="$(now_ns)"
        mv "$fin_marker.tmp" "$fin_marker"
        wait "$rec_pid" || true
        cat "$scratch/record.log" >>"$log"
        if [[ -f "$scratch/record.failed" ]]; then
            note="record exited $(cat "$scratch/record.failed") (see $log)"
            break
        fi
        wall_ms=$((($(cat "$scratch/record.exit_ns") - marker_ns) / 1000000))
        field() { grep -o "$1=[0-9]*" "$scratch/record.log" | tail -n 1 | cut -d= -f2; }
        ms="$(field finalize_ms)"
        cpu_build="$(field cpu_build_ms)"
        cpu_total="$(field cpu_ms)"
        rss_kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$scratch/record.time")"
        read -r cp_u cp_s cp_e <"$scratch/cp.time"
        cp_cpu="$(calc "$cp_u + $cp_s")"
        local cpu_pct total_pct
        cpu_pct="$(calc "100 * $cpu_build / 1000 / $cp_cpu")"
        total_pct="$(calc "100 * $cpu_total / 1000 / $cp_cpu")"
        echo "bench: finalize ($mode) run $r: finalize_ms=$ms ($(grep -o '\(walk\|describe_sign\|write\|resolved\)\(_ms\)\?=[0-9]*' "$scratch/record.log" | tr '\n' ' ')) marker->exit=${wall_ms}ms rss=${rss_kb}kB sidecar_cpu_during_build=${cpu_build}ms total=${cpu_total}ms cp_cpu=${cp_cpu}s cp_wall=${cp_e}s" | tee -a "$log" >&2
        if [[ -n "$ms" && ("$best_ms" == NA || "$ms" -lt "$best_ms") ]]; then
            best_ms="$ms"
            phases="$(grep -o '\(walk\|describe_sign\|write\)_ms=[0-9]*' "$scratch/record.log" | tail -n 3 | tr '\n' ' ' | sed 's/ $//')"
        fi
        if [[ "$best_wall" == NA || "$wall_ms" -lt "$best_wall" ]]; then best_wall="$wall_ms"; fi
        max_into() { if [[ "${!1}" == NA ]] || awk -v a="$2" -v b="${!1}" 'BEGIN {exit !(a > b)}'; then printf -v "$1" '%s' "$2"; fi; }
        max_into rss_max "$(calc "$rss_kb / 1024")"
        max_into cpu_build_max "$cpu_pct"
        # The sidecar's own CPU until the build ended, in ms, per run: set
        # against the floor's CPU (below), not against cp's, whose CPU
        # varies from run to run by more than the difference measured.
        FIN[$label.cpu_build_ms]+="$cpu_build "
        max_into cpu_total_max "$total_pct"
        FIN[$label.cp_cpu]="$cp_cpu"
        FIN[last_ws]="$fin_ws"
        FIN[$label.statement_bytes]="$(field statement_bytes)"
    done
    FIN[$label.ms]="$best_ms"
    FIN[$label.wall]="$best_wall"
    FIN[$label.rss]="$rss_max"
    FIN[$label.cpu]="$cpu_build_max"
    FIN[$label.cpu_total]="$cpu_total_max"
    FIN[$label.phases]="$phases"
    FIN[$label.note]="$note"
}
say "finalize: snapshot + record while copying workload a into the workspace (subjects per file)"
finalize_runs files
say "finalize: the same with one dirHash subject for the workspace"
finalize_runs dirhash
say "finalize: the same with one file chosen by --subject, the rest as one dirHash"
subject_rel="$(cd "$A" && find . -type f | LC_ALL=C sort | first 1 | cut -c3-)"
finalize_runs subject
fin_ws="${FIN[last_ws]:-}"
# Post-hoc: hashing the same finished workspace from scratch (warm cache),
# with provenant and with the peers.
posthoc=NA
posthoc_sha=NA
digest_cpu=NA
floor_runs=""
if [[ -n "$fin_ws" && -d "$fin_ws/a" ]]; then
    say "finalize: post-hoc hashing of the finished workspace (provenant digest, parallel sha256sum)"
    posthoc="$(best_of prov_digest "$fin_ws")"
    posthoc_sha="$(best_of par_sha256sum "$fin_ws")"
    # The floor for the sidecar's CPU: reading and hashing every byte the
    # build wrote, once (the median of $runs runs).
    for ((i = 0; i < runs; i++)); do
        /usr/bin/time -f '%U %S' -o "$scratch/digest.time" "$prov" --log-level warn digest "$fin_ws" >/dev/null 2>>"$log"
        read -r d_u d_s <"$scratch/digest.time"
        floor_runs+="$(calc "$d_u + $d_s") "
    done
    digest_cpu="$(echo "$floor_runs" | median)"
fi

# --- statement size and signing time for 100k materials -------------------------
# `attest --material A` records workload a's files as resolvedDependencies:
# one descriptor per file (files), or one gitTree digest for the whole
# directory (tree, the aggregate digest). attest logs the statement size
# and how long describing and signing took.
declare -A ST_BYTES ST_SIGN ST_ENV ST_WALL
echo "bench" >"$scratch/one.txt"
for how in files tree dirhash; do
    say "statement: attest --material a --materials-as $how"
    best_sign=NA
    for ((i = 0; i < runs; i++)); do
        t0="$(now_ns)"
        if ! "$prov" attest --material "$A" --product "$scratch/one.txt" --key "$key" \
            --materials-as "$how" -o "$scratch/st-$how.jsonl" 2>"$scratch/st.log"; then
            cat "$scratch/st.log" >>"$log"
            break
        fi
        wall=$(((($(now_ns) - t0)) / 1000000))
        cat "$scratch/st.log" >>"$log"
        ms="$(grep -o 'describe_sign_ms=[0-9]*' "$scratch/st.log" | cut -d= -f2)"
        if [[ "$best_sign" == NA || "$ms" -lt "$best_sign" ]]; then
            best_sign="$ms"
            ST_WALL[$how]="$wall"
        fi
        ST_BYTES[$how]="$(grep -o 'statement_bytes=[0-9]*' "$scratch/st.log" | cut -d= -f2)"
        ST_ENV[$how]="$(stat -c %s "$scratch/st-$how.jsonl")"
    done
    ST_SIGN[$how]="$best_sign"
done

# --- io_uring experiment (issue 19) --------------------------------------------
# examples/uring_walk.rs lists workload a once, then does the per-file part
# of the walk on all cores twice over the same list: with system calls as
# provenant's walker does (openat, fstat, read, close) and with io_uring
# (statx, openat into a direct descriptor, read, close, linked, 64 files in
# flight per core), best of $runs after a warm-up; URING_NO_STATX=1 drops the
# statx (a best case provenant could not ship: see docs/bench.md). The
# projection replaces attest's per-file time by io_uring's, i.e. assumes
# every millisecond saved there is saved in attest.
URING="" URING_NS=""
say "io_uring: examples/uring_walk.rs on workload a"
if CARGO_TARGET_DIR="$target_dir" nice -n 10 cargo build --release --quiet --example uring_walk >&2; then
    # It holds every directory of workload a open (10k+ descriptors).
    uring_walk() { (ulimit -n 65536 2>/dev/null; env "$@" "$target_dir/release/examples/uring_walk" "$A" "$runs" 2>>"$log"); }
    URING="$(uring_walk)" || URING=""
    URING_NS="$(uring_walk URING_NO_STATX=1)" || URING_NS=""
fi
echo "io_uring: $URING / without statx: $URING_NS" >>"$log"
jnum() { echo "$1" | grep -o "\"$2\":[0-9.]*" | cut -d: -f2; }

# --- profile ------------------------------------------------------------------
perf_summary=""
if [[ "${BENCH_PERF:-0}" == 1 ]]; then
    if command -v perf >/dev/null; then
        say "perf record -g: provenant digest on workload a"
        prov_digest "$A" >/dev/null 2>&1 # warm
        if perf record -q -g -o "$scratch/perf.data" -- "$prov" --log-level warn digest "$A" >/dev/null 2>>"$log"; then
            pr() { perf report -i "$scratch/perf.data" --stdio -g none "$@" 2>/dev/null | grep -v '^#' | grep -v '^$' | sed -e 's/ *- *- *$//' -e 's/ *$//'; }
            perf_summary="$(
                echo "# CPU time by object (self)"
                pr --no-children --sort dso | first 8
                echo "# hottest symbols (self, >= 0.7%)"
                pr --no-children --sort dso,symbol --percent-limit 0.7 | first 25
                echo "# syscalls and provenant functions (children = self + callees)"
                pr --children --sort symbol --percent-limit 1 | grep -E '__x64_sys_|provenant::|sha2::|std::fs::|std::sys::fs' | first 20
            )"
        else
            perf_summary="perf record failed (see $log)"
        fi
        # The sidecar during one finalize run (subjects per file), by
        # thread: hashing threads, the inotify thread, the main thread
        # (start-up and finalize).
        say "perf record -g: provenant record while cp -r writes workload a"
        rec_wrap=(perf record -q -g -o "$scratch/record.perf" --)
        finalize_runs files perf 1
        rec_wrap=()
        if [[ -f "$scratch/record.perf" ]]; then
            rp() { perf report -i "$scratch/record.perf" --stdio -g none "$@" 2>/dev/null | grep -v '^#' | grep -v '^$' | sed -e 's/ *- *- *$//' -e 's/ *$//'; }
            sidecar_summary="$(
                echo "# CPU time by thread"
                rp --no-children --sort comm | first 6
                echo "# hashing threads: syscalls and hot functions (children = self + callees, % of the thread)"
                rp --children --comm provenant-hash- --percentage relative --sort symbol --percent-limit 3 | grep -E '__x64_sys_|provenant::|sha2::' | first 12
                echo "# inotify thread (% of the thread)"
                rp --children --comm provenant-watch --percentage relative --sort symbol --percent-limit 4 | grep -E '__x64_sys_|provenant::|memcmp|malloc' | first 12
            )"
        fi
    else
        perf_summary="perf not installed"
    fi
fi

rm -rf "$ws_root"
measure_s="$(awk -v a="$measure_t0" -v b="$(now_ns)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')"
own_cpu_to "$scratch/times.1"
steal_pct="$(awk -v a="$steal0" -v b="$(steal_s)" -v t="$measure_s" -v n="$cores" 'BEGIN {printf "%.1f", 100 * (b - a) / (t * n)}')"
others_pct="$(awk -v m0="$machine_cpu0" -v m1="$(machine_cpu_s)" -v o0="$(cpu_s_of "$scratch/times.0")" -v o1="$(cpu_s_of "$scratch/times.1")" -v t="$measure_s" -v n="$cores" \
    'BEGIN {x = 100 * ((m1 - m0) - (o1 - o0)) / (t * n); if (x < 0) x = 0; printf "%.0f", x}')"

# --- report -------------------------------------------------------------------
mb() { calc "$1 / 1e6"; }
thr() { if [[ "$2" == NA ]]; then echo NA; else calc "$1 / 1e6 / $2"; fi; }
total_s=$(($(date +%s) - bench_started))
cpu_model="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
load="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "## provenant bench ($mode)"
echo
echo "- machine: $cores cores ($(nproc) online), ${cpu_model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load average at start $load_start, at end $load"
echo "- other processes used ${others_pct}% of the machine's CPU during the ${measure_s}s of measurements (waited ${waited}s for < 10% before starting), hypervisor steal ${steal_pct}%; the bench runs at nice ${bench_nice}, so other work distorts every number"
echo "- tools: $("$prov" --version | first 1), $in_toto_version, $(sha256sum --version | first 1), $(openssl version | cut -d' ' -f1-2)"
echo "- wall times: warm page cache, best of $runs after one warm-up run; finalize workspaces in $ws_root ($(df -PT "$bench_dir" | awk 'NR == 2 {print $2}') for workloads, $(stat -f -c %T "$(dirname "$ws_root")") for workspaces)"
echo "- openssl speed -evp sha256 -bytes 16384: $ossl_core MB/s per core; ceiling $ossl_core x $cores = $ossl_ceiling MB/s (openssl -multi $cores measured $ossl_multi MB/s)"
echo "- bench took ${total_s}s (release build ${build_s}s, workload generation ${gen_s}s, waiting for the machine to be idle ${waited}s)"
echo
echo "| workload | files | MB | provenant digest | provenant attest | in-toto-run | parallel sha256sum |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for w in a b c; do
    case "$w" in
        a) name="a: node_modules (4 KiB files)" ;;
        b) name="b: 4 large files" ;;
        c) name="c: mixed source tree" ;;
    esac
    echo "| $name | ${FILES[$w]} | $(mb "${BYTES[$w]}") | $(fmt_s "${T[$w.digest]}") ($(thr "${BYTES[$w]}" "${T[$w.digest]}") MB/s) | $(fmt_s "${T[$w.attest]}") | $(fmt_s "${T[$w.intoto]}") | $(fmt_s "${T[$w.sha]}") |"
done
echo
echo "| measure | value | target | result |"
echo "|---|---:|---:|---|"
row() { echo "| $1 | $2 | $3 | $4 |"; }
for w in a b c; do
    r_it="$(calc "${T[$w.intoto]} / ${T[$w.attest]}")"
    r_sha="$(calc "${T[$w.sha]} / ${T[$w.digest]}")"
    tp="$(thr "${BYTES[$w]}" "${T[$w.digest]}")"
    r_ceil="$(calc "100 * $tp / $ossl_ceiling")"
    if [[ "$w" == a ]]; then
        row "($w) in-toto-run / provenant attest" "${r_it}x" ">= 10x" "$(verdict "$r_it" '>=' 10)"
        row "($w) parallel sha256sum / provenant digest" "${r_sha}x" ">= 2.5x" "$(verdict "$r_sha" '>=' 2.5)"
        row "($w) provenant digest MB/s / openssl ceiling" "${r_ceil}%" "info" ""
    elif [[ "$w" == b ]]; then
        row "($w) in-toto-run / provenant attest" "${r_it}x" "info" ""
        row "($w) parallel sha256sum / provenant digest" "${r_sha}x" "info" ""
        row "($w) provenant digest MB/s / openssl ceiling ($tp / $ossl_ceiling)" "${r_ceil}%" ">= 85%" "$(verdict "$r_ceil" '>=' 85)"
    else
        row "($w) in-toto-run / provenant attest" "${r_it}x" "info (>= 10x on a)" ""
        row "($w) parallel sha256sum / provenant digest" "${r_sha}x" "info (>= 2.5x on a)" ""
        row "($w) provenant digest MB/s / openssl ceiling ($tp / $ossl_ceiling)" "${r_ceil}%" "info (>= 85% on b)" ""
    fi
done
posthoc_ms="$(calc "${posthoc} * 1000")"
posthoc_sha_ms="$(calc "${posthoc_sha} * 1000")"
posthoc_it_ms="$(calc "${T[a.intoto]} * 1000")"
for mode in files dirhash subject; do
    case "$mode" in
        files) what="a subject per file, ${FIN[files.statement_bytes]:-?} B statement" ;;
        dirhash) what="one dirHash subject, ${FIN[dirhash.statement_bytes]:-?} B statement" ;;
        subject) what="one --subject file + dirHash of the rest, ${FIN[subject.statement_bytes]:-?} B statement" ;;
    esac
    ms="${FIN[$mode.ms]:-NA}"
    if [[ "$ms" == NA ]]; then
        row "finalize ($what)" "N/A: ${FIN[$mode.note]:-no run}" "<= 100 ms" "N/A"
        continue
    fi
    [[ -n "${FIN[$mode.note]:-}" ]] && row "finalize runs ($mode)" "stopped early: ${FIN[$mode.note]}" "" ""
    # Issue 19 asks 80 ms for a subject per file; the aggregates keep 100.
    fin_max=100
    [[ "$mode" == files ]] && fin_max=80
    row "finalize: build seen ended -> attestation written ($what; best of $runs; ${FIN[$mode.phases]})" "$ms ms" "<= $fin_max ms" "$(verdict "$ms" '<=' "$fin_max")"
    row "finalize: marker created -> record exited, wall ($mode)" "${FIN[$mode.wall]} ms" "info (<= 100 ms)" ""
    div="($ms > 0 ? $ms : 1)"
    r_post="$(calc "$posthoc_ms / $div")"
    row "post-hoc provenant digest of the workspace ($(fmt_s "$posthoc")) / finalize ($mode)" "${r_post}x" ">= 50x" "$(verdict "$r_post" '>=' 50)"
    row "post-hoc parallel sha256sum ($(fmt_s "$posthoc_sha")) / finalize ($mode)" "$(calc "$posthoc_sha_ms / $div")x" "info (>= 50x)" ""
    row "post-hoc in-toto-run (workload a, $(fmt_s "${T[a.intoto]}")) / finalize ($mode)" "$(calc "$posthoc_it_ms / $div")x" "info (>= 50x)" ""
    row "record peak RSS, ${FILES[a]} tracked files ($mode, max of $runs)" "${FIN[$mode.rss]} MB" "<= 64 MB" "$(verdict "${FIN[$mode.rss]}" '<=' 64)"
    row "record CPU until the build ended / cp -r CPU ($mode, max of $runs)" "${FIN[$mode.cpu]}%" "<= 5%" "$(verdict "${FIN[$mode.cpu]}" '<=' 5)"
    row "record CPU in all, finalize included / cp -r CPU ($mode, max of $runs)" "${FIN[$mode.cpu_total]}%" "info" ""
done
floor_pct="$(calc "100 * ${digest_cpu} / ${FIN[files.cp_cpu]:-NA}")"
row "floor: provenant digest CPU of the finished workspace / cp -r CPU (reading and hashing every byte once)" "${floor_pct}%" "info" ""
# Each run's sidecar CPU over the floor's (median of the floor runs); the
# verdict is on the median run, the range is printed beside it.
floor_xs=""
for c in ${FIN[files.cpu_build_ms]:-}; do floor_xs+="$(calc "$c / 1000 / $digest_cpu") "; done
floor_x="$(echo "$floor_xs" | median)"
[[ -z "$floor_xs" ]] && floor_x=NA
row "record CPU until the build ended / the floor's CPU (files; median of $runs runs, range $(echo "$floor_xs" | range); floor ${digest_cpu} s, runs ${floor_runs% })" "${floor_x}x" "<= 1.15x" "$(verdict "$floor_x" '<=' 1.15)"
size_of() { if [[ "$1" == NA ]]; then echo N/A; elif (($1 >= 1000000)); then echo "$(mb "$1") MB"; else echo "$1 B"; fi; }
for how in files tree dirhash; do
    row "statement, ${FILES[a]} materials as $how: size / envelope file" "$(size_of "${ST_BYTES[$how]:-NA}") / $(size_of "${ST_ENV[$how]:-NA}")" "info" ""
    row "describe + sign, ${FILES[a]} materials as $how (attest wall incl. hashing)" "${ST_SIGN[$how]:-NA} ms (${ST_WALL[$how]:-NA} ms)" "info" ""
done
if [[ -n "$URING" && -n "$URING_NS" ]]; then
    u_sys="$(jnum "$URING" syscalls_ms)"
    u_ur="$(jnum "$URING" io_uring_ms)"
    u_ns="$(jnum "$URING_NS" io_uring_ms)"
    u_sys_ns="$(jnum "$URING_NS" syscalls_ms)"
    row "io_uring, per-file part of the walk on workload a: io_uring / syscalls (examples/uring_walk.rs)" "$u_ur ms / $u_sys ms ($(calc "100 * ($u_sys - $u_ur) / $u_sys")% faster)" "info" ""
    row "io_uring without the statx (a best case that cannot ship) / syscalls" "$u_ns ms / $u_sys_ns ms ($(calc "100 * ($u_sys_ns - $u_ns) / $u_sys_ns")% faster)" "info" ""
    u_proj="$(calc "${T[a.attest]} - ($u_sys_ns - $u_ns) / 1000")"
    u_gain="$(calc "100 * (${T[a.attest]} - $u_proj) / ${T[a.attest]}")"
    u_vs_it="$(calc "${T[a.intoto]} / $u_proj")"
    row "attest on workload a with the best case's saving: faster by / vs in-toto-run" "$u_gain% / ${u_vs_it}x" ">= 15% and >= 12x to land" "$(awk -v g="$u_gain" -v r="$u_vs_it" 'BEGIN {print (g >= 15 && r >= 12) ? "met" : "not met: the walker stays (docs/bench.md)"}')"
else
    row "io_uring walk experiment" "N/A (see $log)" "info" ""
fi
if [[ -n "${sidecar_summary:-}" ]]; then
    echo
    echo "### perf: provenant record while cp -r writes workload a (one run, subjects per file)"
    echo
    echo '```'
    echo "$sidecar_summary"
    echo '```'
fi
if [[ -n "$perf_summary" ]]; then
    echo
    echo "### perf: provenant digest on workload a"
    echo
    echo '```'
    echo "$perf_summary"
    echo '```'
fi

if [[ "${BENCH_REAL:-0}" == 1 ]]; then
    for w in cargo npm archive; do
        say "real build: $w"
        real_runs "$w"
    done
    real_table
fi

# The admission webhook, last: its load runs on a machine the sections above
# no longer use.
webhook_bench
webhook_table

# The remote signer against local signing, after the webhook.
signer_bench
signer_table

# Keyless signing and Rekor, after the webhook (each has the machine to
# itself).
keyless_bench
keyless_table
