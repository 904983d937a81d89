#!/usr/bin/env python3
"""Markdown tables from the reports of benches/ab.sh and benches/multi.sh.

    python3 benches/ab_tables.py ab OUT_DIR      # fc-*.json, sus-*.json, cpu.tsv
    python3 benches/ab_tables.py summary OUT_DIR # median (range) per server of the ab runs
    python3 benches/ab_tables.py multi OUT_DIR   # multi-*.json, cpu.tsv
"""
import json
import re
import statistics
import sys
from pathlib import Path


def ms(us):
    return f"{us / 1000:.2f}"


def cpu_table(out):
    cpu = {}
    for line in (out / "cpu.tsv").read_text().splitlines():
        parts = line.split("\t")
        cpu[tuple(parts[:-1])] = float(parts[-1])
    return cpu


def verified(r):
    v = r.get("verification")
    if not v:
        return "-"
    return "passed" if v["passed"] else "FAILED"


def ab(out):
    cpu = cpu_table(out)
    names = sorted({p.stem.split("-", 1)[1] for p in out.glob("fc-*.json")},
                   key=lambda n: (int(n[1:]), n[0]))
    print("| run | server | req/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/req | redis-direct req/s "
          "| server ÷ redis-direct | verified |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        r = json.loads((out / f"fc-{n}.json").read_text())
        s, d = r["server"], r["redis_direct"]
        c = cpu[(n, "fc")] * 1e6 / s["answered"]
        print(f"| {n} | {'A' if n[0] == 'A' else 'B'} | {s['throughput_rps']:,.0f} | {ms(s['latency']['p50_us'])} "
              f"| {ms(s['latency']['p99_us'])} | {ms(s['latency']['p999_us'])} | {c:.2f} "
              f"| {d['throughput_rps']:,.0f} | {r['ratio']:.2f} | {verified(s)}, {verified(d)} |")
    print()
    print("| run | orders/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/order |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        s = json.loads((out / f"sus-{n}.json").read_text())
        o = s["outcomes"]
        errors = o["busy"] + o["other_errors"] + o["connection_failures"] + o["lost"]
        c = cpu[(n, "sus")] * 1e6 / o["ok"]
        print(f"| {n} | {s['ok_per_s']:,.0f} | {ms(s['latency']['p50_us'])} | {ms(s['latency']['p99_us'])} "
              f"| {ms(s['latency']['p999_us'])} | {errors} | {c:.2f} |")


def summary(out):
    """Median and range per side: flash-crowd req/s, p99, CPU; sustained orders/s, p99, CPU."""
    cpu = cpu_table(out)
    rows = {"A": [], "B": []}
    for p in out.glob("fc-*.json"):
        n = p.stem.split("-", 1)[1]
        f = json.loads(p.read_text())["server"]
        s = json.loads((out / f"sus-{n}.json").read_text())
        rows[n[0]].append((f["throughput_rps"], f["latency"]["p99_us"] / 1000, cpu[(n, "fc")] * 1e6 / f["answered"],
                           s["ok_per_s"], s["latency"]["p99_us"] / 1000, cpu[(n, "sus")] * 1e6 / s["outcomes"]["ok"]))
    print("| server | runs | flash crowd req/s | flash crowd p99 ms | CPU µs/req | sustained orders/s "
          "| sustained p99 ms | CPU µs/order |")
    print("|---|---|---|---|---|---|---|---|")
    for side, rs in rows.items():
        cells = []
        for i, fmt in enumerate(["{:,.0f}", "{:.1f}", "{:.2f}", "{:,.0f}", "{:.1f}", "{:.2f}"]):
            v = sorted(r[i] for r in rs)
            cells.append(f"{fmt.format(statistics.median(v))} ({fmt.format(v[0])}–{fmt.format(v[-1])})")
        print(f"| {side} | {len(rs)} | " + " | ".join(cells) + " |")


def multi(out):
    cpu = cpu_table(out)
    print("| run | servers | connections per server | req/s | p50 ms | p99 ms | p99.9 ms | ok | sold out "
          "| already bought | busy+errors | CPU of the 3 servers µs/req | verified | MySQL live orders |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in sorted(out.glob("multi-*.json"), key=lambda p: (int(re.sub(r"\D", "", p.stem)), "one" in p.stem)):
        n = p.stem.split("-", 1)[1]
        r = json.loads(p.read_text())
        o = r["outcomes"]
        errors = o["busy"] + o["other_errors"] + o["connection_failures"] + o["lost"]
        per = " / ".join(str(s["connections"]) for s in r["servers"])
        c = cpu[(n,)] * 1e6 / r["answered"]
        v = r["verification"]
        print(f"| {n} | {len(r['servers'])} | {per} | {r['throughput_rps']:,.0f} | {ms(r['latency']['p50_us'])} "
              f"| {ms(r['latency']['p99_us'])} | {ms(r['latency']['p999_us'])} | {o['ok']:,} | {o['sold_out']:,} "
              f"| {o['already_bought']:,} | {errors} | {c:.2f} | {verified(r)}: {v['sold']:,} sold of "
              f"{v['total']:,} | {v['store']['live_orders']:,} |")


if __name__ == "__main__":
    {"ab": ab, "summary": summary, "multi": multi}[sys.argv[1]](Path(sys.argv[2]))
