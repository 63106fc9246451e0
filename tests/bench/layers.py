#!/usr/bin/env python3
"""Per-layer CPU of custosd from a `perf record -g` of the daemon under load.

    layers.py PERF_DATA BENCH_JSON DAEMON_CPU_SECONDS [TITLE]

Each sample is put in one layer: samples on the audit writer thread are the
audit writer's; a sample in the kernel goes by the system call on its
kernel call chain (socket I/O, futex wake/park, epoll, file calls);
otherwise by the sampled function's own crate or library (self time: a
release build has no frame pointers, so the allocator and memcpy are rows
of their own, whoever called them). A layer's CPU per operation is its
share of the samples times the daemon's CPU time, measured without the
profiler over a run of the same load (/proc/PID/stat), over the
operations of that run (BENCH_JSON, `custos bench --json`).
"""
import json
import re
import subprocess
import sys

# Kernel samples, by the system call found on the chain.
SYSCALLS = [
    ("kernel: socket reads and writes (gRPC frames)", r"sys_(read|write|readv|writev|recvmsg|sendmsg|recvfrom|sendto)\b"),
    ("kernel: futex (threads waking and parking)", r"sys_futex|futex_"),
    ("kernel: epoll (the runtime's poll)", r"sys_epoll|ep_poll"),
    ("kernel: file calls (SoftHSM2's token files)", r"sys_(openat|open|close|newfstatat|fstat|statx|lseek|fcntl|flock|getdents64|unlink|rename)"),
    ("kernel: scheduling, interrupts (no system call)", r"."),
]

# User samples, by the sampled function: first match wins.
USER = [
    ("device: SoftHSM2 and its OpenSSL", r"libsofthsm2|libcrypto|libssl|botan|cryptoki::"),
    ("allocator (malloc/free)", r"malloc|\bfree\b|cfree|realloc|calloc|memalign|_int_|tcache|arena_|sysmalloc"),
    ("memcpy/memmove/memset", r"mem(cpy|move|set|cmp)"),
    ("h2 (HTTP/2 framing, HPACK)", r"\bh2::"),
    ("hyper/tower/http (service stack)", r"\bhyper|\btower|\bhttp::|http_body|hyper_util"),
    ("tonic (gRPC codec, routing)", r"\btonic"),
    ("prost (protobuf decode/encode)", r"\bprost|custos_proto::"),
    ("tokio (runtime, channels, timers)", r"\btokio|\bmio::"),
    ("serde_json (claims parse, JSON write)", r"serde_json|\bserde::|\bryu::|\bitoa::"),
    ("josekit (JWS assembly)", r"josekit"),
    ("base64", r"\bbase64"),
    ("sha2 (audit input digest)", r"\bsha2::|sha256"),
    ("audit line (request side)", r"custos_daemon::audit"),
    ("caller check, policy, rate limit", r"custos_daemon::server::caller|custos_daemon::access"),
    ("FAPI rules, claims", r"custos_daemon::fapi|custos_daemon::jose"),
    ("keyring lookup", r"custos_daemon::keyring"),
    ("backend guard, session pool", r"custos_daemon::backend"),
    ("metrics, tracing", r"prometheus|custos_daemon::metrics|\btracing"),
    ("other custosd code", r"custos_daemon"),
    ("libc (other), dynamic loader", r"libc\.so|ld-linux|libpthread|libgcc"),
    ("std, core, alloc, hashbrown", r"\bstd::|\bcore::|\balloc::|hashbrown"),
]


def samples(data):
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"],
        capture_output=True, text=True, check=True).stdout
    for block in out.split("\n\n"):
        lines = [l for l in block.splitlines() if l.strip()]
        if not lines:
            continue
        # With -g, the first line is the thread name and each frame a line
        # ("addr sym (dso)"); the leaf frame comes first.
        comm = lines[0].split()[0] if not lines[0].startswith((" ", "\t")) else ""
        frames = [l.strip() for l in lines[1:]] if comm else [l.strip() for l in lines]
        if comm and not frames:
            # No call chain: the line carries the frame.
            frames = [lines[0][len(comm):].strip()]
        yield comm, frames


def layer(comm, frames):
    if comm.startswith("custos-audit"):
        return "audit writer thread (chain, JSON, write)"
    leaf = frames[0] if frames else ""
    if "[kernel" in leaf:
        kernel = " ".join(f for f in frames if "[kernel" in f)
        for name, rx in SYSCALLS:
            if re.search(rx, kernel):
                return name
    for name, rx in USER:
        if re.search(rx, leaf):
            return name
    return "other (unresolved)"


def main():
    data, bench, cpu = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3])
    title = sys.argv[4] if len(sys.argv) > 4 else "operation"
    count = {}
    for comm, frames in samples(data):
        name = layer(comm, frames)
        count[name] = count.get(name, 0) + 1
    total = sum(count.values()) or 1
    ops = max(int(bench["ops"]), 1)
    per_op = 1e6 * cpu / ops
    print(f"| layer ({title}) | share of custosd CPU | CPU µs/op |")
    print("|---|---:|---:|")
    for name, n in sorted(count.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {100 * n / total:.1f}% | {per_op * n / total:.1f} |")
    print(f"| **custosd total** ({bench['ops_per_sec']:,.0f} ops/s, p50 {bench['p50_us']} µs, "
          f"{total} samples) | 100% | **{per_op:.1f}** |")


if __name__ == "__main__":
    main()
