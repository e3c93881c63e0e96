#!/usr/bin/env python3
"""Turns the results of tools/bench into BENCHMARKS.md and an SVG chart of the ratios, and checks allocation budgets.

  report.py write --results side-by-side.json [--micro micro.md] [--thresholds thresholds.txt]
                  --markdown OUT.md --svg OUT.svg [--elapsed S] [--command C] [--side-command C] [--partial 1]
                  [--concurrent-pingpong TXT] [--concurrent-fileserve TXT]
  report.py check-budgets alloc-budgets.json results.json

Every ratio is a ratio of medians from ONE invocation (the sides alternate run after run); nothing is compared
across invocations.
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from datetime import datetime, timezone

# (scenario, kind, bound, description). kind "nio" compares ours/NIO medians, "limit" ours/limit or ours/iperf3,
# "p99" the p99 latency ours/NIO; bound is a minimum for higher-is-better values and a maximum otherwise.
TARGETS = [
    ("slices-64", "nio", 4.0, "at least 4x NIO"),
    ("slices-64", "limit", 0.5, "at least half of the C loop"),
    ("cross-thread", "nio", 10.0, "at least 10x NIO"),
    ("blast-1g", "nio", 1.2, "at least 1.2x NIO (same client reads)"),
    ("blast-1g", "iperf3", 0.8, "at least 0.8x iperf3 -l 1M"),
    ("ping-pong-1k", "nio", 1.5, "at least 1.5x NIO req/s"),
    ("ping-pong-1k", "p99", 0.7, "p99 at most 0.7x NIO's"),
    ("conn-storm", "nio", 1.5, "at least 1.5x NIO"),
    ("idle-10k", "nio", 0.5, "at most half of NIO's memory per connection"),
    ("fan-out", "nio", 2.0, "at least 2x NIO"),
    ("load-echo", "nio", 2.0, "issue 4: at least 2x NIO messages per client CPU-second"),
    # Kernel-side zero copy (issue 11). "vs:SIDE" compares ours with another side; "vs:SIDE:METRIC" compares a
    # secondary figure (server CPU: lower is better).
    ("ping-pong-1k", "vs:limit:server_cpu_us_per_req", 1.05, "pinned: server CPU per request at most 1.05x the C epoll server's"),
    ("file-serve", "vs:ours-mmap", 1.0, "sendfile at least 1.0x the mmap path's GB/s"),
    ("file-serve", "vs:ours-mmap:server_cpu_s_per_gb", 1.0, "sendfile at no more server CPU per GB than the mmap path"),
    ("file-serve", "nio", 1.2, "sendfile at least 1.2x NIO FileRegion's GB/s"),
    # The async face's own cost (issue 13): "side:SIDE" is SIDE/ours (higher is better); "abs:SIDE:METRIC" is SIDE's
    # own median, at most the bound.
    ("ping-pong-1k", "side:ours-async", 0.9, "async face: at least 0.9x the callback core's req/s"),
    ("ping-pong-1k", "abs:ours-async:allocs_per_req", 0.1, "async face: at most 0.1 heap allocations per request"),
    ("idle-10k", "abs:ours-async", 1536, "async face: at most 1.5 KB per idle connection"),
]

# Scenarios whose limit side is a client doing the same work as ours in C (load-echo: limit/echoclient.c). Their
# secondary figures get an ours/limit ratio too, and the targets section states what the limit allows.
CLIENT_LIMITS = {"load-echo"}

# Secondary figures shown under each scenario: metric key -> label.
SECONDARY = {
    "iperf3_256k_gbs": "iperf3 with -l 256K, the client's read size (GB/s)",
    "p99_ms": "p99 latency (ms)",
    "p50_ms": "p50 latency (ms)",
    "allocs_per_msg": "heap allocations per message",
    "allocs_per_req": "heap allocations per request (server)",
    "allocs_per_conn": "heap allocations per connection (server)",
    "peak_mem_mb": "server peak memory during the broadcast (MiB)",
    "server_cpu_ns_per_msg": "server CPU per message (ns)",
    "server_cpu_us_per_req": "server CPU per request (us)",
    "server_cpu_us_per_conn": "server CPU per connection (us)",
    "server_cpu_s_per_gb": "server CPU per GB sent (s)",
    "msgs_per_s": "messages per second (wall clock)",
    "user_us_per_msg": "client user-space CPU per message (us)",
    "sys_us_per_msg": "client kernel CPU per message (us)",
    "client_cpu_cores": "client CPU in use (cores)",
}


# Scenarios that get a table of every side with its server CPU, and what it shows.
DETAIL = {
    "ping-pong-1k": "The server pinned to one core (one loop), the client (limit/pingpong.c) to the other; server CPU "
                    "is the server process's utime+stime (/proc/PID/stat) over the timed phase, the same measure "
                    "for every side.",
    "idle-10k": "Resident memory per idle connection in the server process (VmRSS with the connections open less before, "
                "divided by their number); ours-async holds one task per connection.",
    "file-serve": "4 clients (limit/reader.c, 256 KiB receives with MSG_TRUNC: the kernel discards the bytes "
                  "without copying them out, so the server is the bottleneck) on one core read the same file from the "
                  "page cache; the server (one loop) on the other; then one untimed reader copies the file and checks "
                  "every byte. ours: OpenFile regions with sendfile; ours-mmap: slices of one "
                  "MappedFile with sendmsg; SwiftNIO: a FileRegion per connection.",
}
ORDER = ["ours", "ours-async", "ours-mmap", "nio", "limit", "iperf3"]
SIDE_NAMES = {"ours": "ours (sendfile)" , "ours-mmap": "ours (mmap slices)", "nio": "SwiftNIO", "limit": "limit (C)"}


def summary(values):
    return statistics.median(values), min(values), max(values)


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e6:
        return f"{v / 1e6:.2f} M"
    if a >= 1e4:
        return f"{v / 1e3:.1f} k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.001:
        return f"{v:.4f}"
    return f"{v:.1e}"


def cell(stats):
    if not stats:
        return "-"
    m, lo, hi = stats
    return f"{fmt(m)} ({fmt(lo)}-{fmt(hi)})"


def per_side(scenario, key=None):
    out = {}
    for r in scenario["runs"]:
        v = r["value"] if key is None else r["metrics"].get(key)
        if v is not None:
            out.setdefault(r["side"], []).append(v)
    return {side: summary(vs) for side, vs in out.items()}


def ratio(a, b):
    return a / b if a is not None and b else None


def evaluate(scenarios):
    """Rows of (scenario, description, ratio, bound, met)."""
    rows = []
    by_name = {s["scenario"]: s for s in scenarios}
    for name, kind, bound, text in TARGETS:
        s = by_name.get(name)
        if not s:
            continue
        if kind.startswith("side:") or kind.startswith("abs:"):
            parts = kind.split(":")
            st = per_side(s, parts[2] if len(parts) > 2 else None)
            v = st.get(parts[1], (None,))[0]
            if kind.startswith("abs:"):
                rows.append((name, text, v, bound, None if v is None else v <= bound, True, ""))
            else:
                r = ratio(v, st.get("ours", (None,))[0])
                rows.append((name, text, r, bound, None if r is None else r >= bound, False, "x"))
            continue
        metric, against = None, kind
        if kind.startswith("vs:"):
            parts = kind.split(":")
            against = parts[1]
            metric = parts[2] if len(parts) > 2 else None
        stats = per_side(s, "p99_ms" if kind == "p99" else metric)
        ours = stats.get("ours", (None,))[0]
        other = stats.get("nio" if kind in ("nio", "p99") else against, (None,))[0]
        if kind == "limit" and other is None:
            continue
        r = ratio(ours, other)
        lower = kind == "p99" or metric is not None or not s["higher_is_better"]
        met = None if r is None else (r <= bound if lower else r >= bound)
        rows.append((name, text, r, bound, met, lower, "x"))
    return rows


# (option, scenario, pattern of the ratio in the script's output, bound, description): the at-the-same-time
# measurements of tools/bench --concurrent, each a ratio of server CPU (lower is better).
CONCURRENT_TARGETS = [
    ("--concurrent-pingpong", "ping-pong-1k", r"median B/A ([0-9.]+)", 1.05,
     "at the same time: server CPU per request at most 1.05x the C epoll server's (concurrent-pingpong.py)"),
    ("--concurrent-fileserve", "file-serve", r"sendfile/mmap ([0-9.]+)x CPU per GB", 1.0,
     "at the same time: sendfile at no more server CPU per GB than the mmap path (concurrent-fileserve.py)"),
]


def concurrent_rows(args):
    """Target rows from the at-the-same-time measurements (tools/bench --concurrent): the same targets as the
    pinned ping-pong and file-serving CPU rows, judged on figures the host's steal cannot tilt one way."""
    rows = []
    for option, name, pattern, bound, text in CONCURRENT_TARGETS:
        path = args.get(option)
        m = re.search(pattern, open(path).read()) if path and os.path.exists(path) else None
        if m:
            r = float(m.group(1))
            rows.append((name, text, r, bound, r <= bound, True, "x"))
    return rows


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 1048576
    except OSError:
        pass
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return "unknown"
    swift = run("swift", "--version").splitlines()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "kernel": platform.release(),
        "swift": swift[0] if swift else "unknown",
        "commit": run("git", "rev-parse", "--short", "HEAD"),
        "nio": pinned_version("swift-nio"),
        "benchmark": pinned_version("benchmark", "package-benchmark"),  # ordo-one/benchmark, formerly package-benchmark
        "iperf3": (run("iperf3", "--version").splitlines() or ["-"])[0],
    }


def pinned_version(*identities):
    """The resolved version of the first of `identities` that Package.resolved pins."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Package.resolved")
    try:
        pins = {pin["identity"]: pin for pin in json.load(open(path))["pins"]}
        for identity in identities:
            if identity in pins:
                return pins[identity]["state"].get("version", "?")
    except (OSError, KeyError, ValueError):
        pass
    return "?"


def micro_rows(path):
    """(benchmark, ns per slice at p50, mallocs p90) from ordo-one/benchmark's markdown output."""
    if not path or not os.path.exists(path):
        return []
    rows, name, wall, malloc = [], None, None, None
    for line in open(path):
        if line.startswith("### "):
            if name:
                rows.append((name, wall, malloc))
            name, wall, malloc = line[4:].strip(), None, None
        elif line.startswith("| Time (wall clock)"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            unit = re.search(r"\((.s)\)", cells[0]).group(1)
            scale = {"ns": 1, "μs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]
            wall = float(cells[3]) * scale / 1024  # p50; one sample = 1024 slices
        elif line.startswith("| Malloc (total)"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            malloc = int(cells[5])  # p90
    if name:
        rows.append((name, wall, malloc))
    return rows


def svg_chart(rows, path):
    """Horizontal bars on a log scale: each target's measured ratio, with the target marked."""
    import math
    rows = [r for r in rows if r[6] == "x"]  # absolute bounds (bytes, allocations) are not ratios
    width, left, right, bar, gap, top = 1040, 400, 40, 18, 10, 62
    height = top + len(rows) * (bar + gap) + 50
    lo, hi = 0.1, 100.0
    def x(v):
        v = min(max(v, lo), hi)
        return left + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (width - left - right)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">ZeroCopyReactor: ratios of medians in one run (log scale)</text>',
           f'<text x="{left}" y="38" fill="#555">green: target met, red: missed; black tick: the target.</text>',
           f'<text x="{left}" y="53" fill="#555">Memory and p99 latency are lower-is-better and are shown inverted (NIO/ours).</text>']
    for tick in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100):
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 5}" x2="{x(tick):.1f}" y2="{height - 40}" stroke="#ddd"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{height - 25}" text-anchor="middle" fill="#555">{tick:g}x</text>')
    for i, (name, text, r, bound, met, lower, _) in enumerate(rows):
        y = top + i * (bar + gap)
        shown = (1 / r if r else None) if lower else r
        target = 1 / bound if lower else bound
        label = f"{name}: {text}"
        out.append(f'<text x="{left - 8}" y="{y + bar - 5}" text-anchor="end">{label}</text>')
        if shown:
            color = "#2a9d3a" if met else "#d33"
            out.append(f'<rect x="{x(lo):.1f}" y="{y}" width="{x(shown) - x(lo):.1f}" height="{bar}" fill="{color}"/>')
            out.append(f'<text x="{max(x(shown), x(target) + 2) + 5:.1f}" y="{y + bar - 5}">{shown:.2f}x</text>')
        out.append(f'<line x1="{x(target):.1f}" y1="{y - 2}" x2="{x(target):.1f}" y2="{y + bar + 2}" stroke="black" stroke-width="3"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def write(args):
    data = json.load(open(args["--results"]))
    scenarios = data["scenarios"]
    partial = args.get("--partial") == "1"
    rows = evaluate(scenarios) + concurrent_rows(args)
    m = machine()
    md = []
    md.append("# Benchmarks: ZeroCopyReactor side by side with SwiftNIO and the loopback limit\n")
    md.append(f"Generated by `{args.get('--command', 'tools/bench')}` on {data['date']} (UTC); "
              f"{data['runs']} run(s) of every side per scenario, alternating, in one invocation"
              f"{' (QUICK: smaller sizes, not for quoting)' if data.get('quick') else ''}"
              f"{' (PARTIAL: only the scenarios below)' if partial else ''}. "
              f"Medians with min-max in parentheses. Ratios are ratios of medians from this run only; never compare "
              f"figures across runs or days.\n")
    md.append(f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work), {m['memory_gib']} GiB, Linux "
              f"{m['kernel']}; {m['swift']}; SwiftNIO {m['nio']}; ordo-one/benchmark {m['benchmark']}; "
              f"{m['iperf3']}; repository commit {m['commit']}. Servers use {data['loops']} loops/threads.\n")
    svg_link = os.path.relpath(args["--svg"], os.path.dirname(os.path.abspath(args["--markdown"])))
    md.append(f"![ratios]({svg_link})\n" if not data.get("quick") else "")
    md.append("## Targets (issue 5; load-echo: issue 4)\n")
    md.append("| scenario | target | measured | met |")
    md.append("|---|---|---|---|")
    for name, text, r, bound, met, lower, suffix in rows:
        md.append(f"| {name} | {text} | {'-' if r is None else f'{r:.2f}{suffix}'} | {'-' if met is None else ('yes' if met else '**no**')} |")
    micro = micro_rows(args.get("--micro"))
    if micro:
        zero = all(mal == 0 for _, _, mal in micro if mal is not None)
        md.append(f"| write chain | 0 heap allocations per write and per flush (micro-benchmarks, p90) | "
                  f"{'0' if zero else 'not 0'} | {'yes' if zero else '**no**'} |")
    md.append("")
    for line in client_limit_notes(scenarios):
        md.append(line + "\n")
    md.append("## Side by side\n")
    md.append("| scenario | unit | ours | SwiftNIO | limit (C) | iperf3 | ours/NIO | ours/limit |")
    md.append("|---|---|---|---|---|---|---|---|")
    for s in scenarios:
        st = per_side(s)
        ours = st.get("ours", (None,))[0]
        lim = st.get("limit") or st.get("iperf3")
        unit = s["unit"] + ("" if s["higher_is_better"] else ", lower is better")
        r_nio = ratio(ours, st.get("nio", (None,))[0])
        r_lim = ratio(ours, st.get("limit", (None,))[0])
        r_iperf = ratio(ours, st.get("iperf3", (None,))[0])
        if not s["higher_is_better"]:
            r_lim = None  # the C server keeps ~0 bytes per connection in user space: a ratio to it means nothing
        lim_text = (f"{r_lim:.2f}" if r_lim else "-") + (f" (iperf3: {r_iperf:.2f})" if r_iperf else "")
        md.append(f"| **{s['scenario']}**: {s['title']} | {unit} | {cell(st.get('ours'))} | {cell(st.get('nio'))} | "
                  f"{cell(st.get('limit'))} | {cell(st.get('iperf3'))} | {f'{r_nio:.2f}' if r_nio else '-'} | {lim_text} |")
        keys = sorted({k for r in s["runs"] for k in r["metrics"] if k in SECONDARY})
        for k in keys:
            ks = per_side(s, k)
            r = ratio(ks.get("ours", (None,))[0], ks.get("nio", (None,))[0])
            r_l = ratio(ks.get("ours", (None,))[0], ks.get("limit", (None,))[0]) if s["scenario"] in CLIENT_LIMITS else None
            md.append(f"| &nbsp;&nbsp;{SECONDARY[k]} | | {cell(ks.get('ours'))} | {cell(ks.get('nio'))} | "
                      f"{cell(ks.get('limit'))} | {cell(ks.get('iperf3'))} | {f'{r:.2f}' if r else '-'} | "
                      f"{f'{r_l:.2f}' if r_l else ''} |")
    md.append("")
    for s in scenarios:
        sides = sorted({r["side"] for r in s["runs"]}, key=lambda x: ORDER.index(x) if x in ORDER else 9)
        cpu_keys = [k for k in ("server_cpu_us_per_req", "server_cpu_s_per_gb", "allocs_per_req", "allocs_per_conn") if any(k in r["metrics"] for r in s["runs"])]
        if s["scenario"] not in DETAIL or not cpu_keys:
            continue
        md.append(f"### {s['scenario']}: every side\n")
        md.append(DETAIL[s["scenario"]] + ("" if data.get("pinned") else " (this run was NOT pinned)") + "\n")
        md.append("| side | " + s["unit"] + " | " + " | ".join(SECONDARY[k] for k in cpu_keys) + " |")
        md.append("|---|---|" + "---|" * len(cpu_keys))
        head = per_side(s)
        metric_stats = {k: per_side(s, k) for k in cpu_keys}
        for side in sides:
            name = SIDE_NAMES.get(side, side) if s["scenario"] == "file-serve" else {"nio": "SwiftNIO", "limit": "limit (C)", "ours": "ours (callback)", "ours-async": "ours (async face)"}.get(side, side)
            md.append(f"| {name} | {cell(head.get(side))} | "
                      + " | ".join(cell(metric_stats[k].get(side)) for k in cpu_keys) + " |")
        md.append("")
    md.append("Sizes: " + "; ".join(f"{s['scenario']} " + ", ".join(f"{k}={v}" for k, v in sorted(s['params'].items()))
                                   for s in scenarios) + ".\n")
    if micro:
        md.append("## Write chain micro-benchmarks (ordo-one/benchmark, no socket)\n")
        md.append("One sample = 1024 slices of 64 bytes cut from one buffer; the fake syscall takes every byte. "
                  "Time is the p50 of the sample divided by 1024; allocations are the p90 per sample "
                  "(thresholds committed in `Benchmarks/Thresholds/`, checked by `tools/bench --alloc-check`).\n")
        md.append("| benchmark | ns per slice (p50) | heap allocations per 1024 slices (p90) |")
        md.append("|---|---|---|")
        for name, wall, mal in micro:
            md.append(f"| {name} | {'-' if wall is None else f'{wall:.1f}'} | {'-' if mal is None else mal} |")
        md.append("")
        th = args.get("--thresholds")
        if th and os.path.exists(th):
            verdict = [l.strip() for l in open(th) if "thresholds" in l.lower() and ("EQUAL" in l or "regress" in l.lower() or "improv" in l.lower())]
            if verdict:
                md.append(f"Thresholds check: {verdict[-1]}\n")
    md.append("## What each side is\n")
    md.append(
        "- **ours**: ZeroCopyReactor, `ReactorPool` with the same loop count, idiomatic use: `Slice(unsafeBytes:owner:)` "
        "of one buffer, an `OutboundMessage` of 1024 slices per write, `connection.write` from any thread, the "
        "library's `EchoHandler`.\n"
        "- **SwiftNIO**: NIOPosix `ServerBootstrap` on a `MultiThreadedEventLoopGroup` of the same size, idiomatic use: "
        "`context.write` + `flush` of `ByteBuffer` slices (`getSlice`, shared storage, no copy), `channel.writeAndFlush` "
        "from other threads, the write-in-`channelRead`/flush-in-`channelReadComplete` echo. Same backlog (4096) and "
        "TCP_NODELAY as ours.\n"
        "- **limit (C)**: `Benchmarks/limit/writer.c` (blocking `write`/`writev`, 1024 iovecs) and `echo.c` (epoll, one "
        "thread per SO_REUSEPORT listener): the same traffic with no runtime at all; for load-echo, the client "
        "`echoclient.c`. **iperf3**: `iperf3 -c 127.0.0.1 -l 1M`.\n"
        "- Every server runs in its own fresh process (`SideBySide serve`); every client is the same C program for "
        "every side (`reader.c` 256 KiB reads, `pingpong.c`, `storm.c`, `idle.c`, `fanin.c`), so only the system under "
        "test differs. Allocations are counted by malloc hooks in the server process "
        "(`Sources/CBenchSupport/allocations.c`) over the steady-state phase; CPU is the server's user+system time.\n"
        "- **load-echo** measures clients instead: ours is the release `zcr load --mode echo --pipeline 1 --threads 1`, "
        "SwiftNIO a NIOPosix `ClientBootstrap` client on a one-thread group doing the same work (`SideBySide client "
        "load-echo nio`: one 64-byte message in flight per connection, `writeAndFlush` of a `getSlice` of one pattern "
        "buffer, every echoed byte verified, each round trip recorded in the same HdrHistogram layout). The server for "
        "all three is `limit/echo.c` with one thread, in its own process. Its limit side is `limit/echoclient.c`: the same "
        "work in plain C on one epoll thread (one `send` and one `read` per message, every byte verified, one "
        "`clock_gettime` per round trip, log-linear latency buckets), the most this machine allows a client that makes "
        "one send and one read per message. At each of the client's once-a-second progress "
        "lines the harness reads the client's utime+stime (`/proc/PID/stat`) and the bytes the server has echoed; "
        "messages per CPU-second are messages echoed / client CPU seconds from the first such line to the last "
        "(the client's window less its first second). Latencies are each client's own report.\n")
    analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ANALYSIS.md")
    if os.path.exists(analysis) and not data.get("quick") and not partial:
        md.append(open(analysis).read().rstrip() + "\n")
    md.append("## Commands\n")
    md.append("```")
    md.append(args.get("--command", "tools/bench"))
    md.append(args.get("--side-command", ""))
    for s in scenarios:
        for c in s.get("commands", []):
            md.append(f"# {s['scenario']}: {c}")
    md.append("(cd Benchmarks && swift package --disable-sandbox benchmark --target WriteChainBenchmarks --format markdown)")
    md.append("(cd Benchmarks && swift package --disable-sandbox benchmark thresholds check --target WriteChainBenchmarks)")
    md.append("```\n")
    if args.get("--elapsed"):
        md.append(f"Measuring took {int(args['--elapsed']) // 60} min {int(args['--elapsed']) % 60} s.\n")
    with open(args["--markdown"], "w") as f:
        f.write("\n".join(md))
    svg_chart(rows, args["--svg"])
    print(f"wrote {args['--markdown']} and {args['--svg']}")
    for name, text, r, bound, met, lower, suffix in rows:
        print(f"  {name:14} {text:45} {'-' if r is None else f'{r:.2f}{suffix}':>8}  {'met' if met else 'MISSED'}")
    for line in client_limit_notes(scenarios):
        print("  " + line.replace("**", ""))


def client_limit_notes(scenarios):
    """For scenarios whose limit side is a C client (load-echo): ours/limit, limit/NIO, and whether the target
    ratio to NIO is within what the C client reaches."""
    notes = []
    bounds = {name: bound for name, kind, bound, _ in TARGETS if kind == "nio"}
    for s in scenarios:
        if s["scenario"] not in CLIENT_LIMITS:
            continue
        st = per_side(s)
        ours, nio, lim = (st.get(k, (None,))[0] for k in ("ours", "nio", "limit"))
        if lim is None:
            continue
        r_ol, r_ln = ratio(ours, lim), ratio(lim, nio)
        text = (f"**{s['scenario']}, against the C client (limit)**: ours/limit {'-' if r_ol is None else f'{r_ol:.2f}x'}, "
                f"limit/NIO {'-' if r_ln is None else f'{r_ln:.2f}x'}.")
        bound = bounds.get(s["scenario"])
        if bound and r_ln is not None:
            if r_ln < bound:
                text += (f" Even the C client is below {bound:g}x NIO: no client that makes one send and one read per "
                         f"message reaches the target on this machine.")
            else:
                text += f" The C client is at or above {bound:g}x NIO, so the target is within what the machine allows."
        notes.append(text)
    return notes


def check_budgets(budget_path, results_path):
    budgets = json.load(open(budget_path))
    data = json.load(open(results_path))
    failed = False
    checked = 0
    for s in data["scenarios"]:
        for key, limit in budgets.get(s["scenario"], {}).items():
            values = [r["metrics"][key] for r in s["runs"] if r["side"] == "ours" and key in r["metrics"]]
            if not values:
                print(f"{s['scenario']}: no {key} measured")
                failed = True
                continue
            worst = max(values)
            checked += 1
            ok = worst <= limit
            failed |= not ok
            print(f"{s['scenario']}: {key} = {worst:.6f} (budget {limit}) {'ok' if ok else 'OVER BUDGET'}")
    print(f"{checked} budget(s) checked: {'FAILED' if failed else 'all within budget'}")
    return 1 if failed or checked == 0 else 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "check-budgets":
        return check_budgets(argv[2], argv[3])
    if len(argv) >= 2 and argv[1] == "write":
        args, i = {}, 2
        while i < len(argv):
            args[argv[i]] = argv[i + 1]
            i += 2
        write(args)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
