#!/usr/bin/env python3
"""Prints the BENCHMARKS.md tables from the JSON reports benches/run.sh wrote."""
import json
import sys
from pathlib import Path

results = Path(sys.argv[1] if len(sys.argv) > 1 else "benches/results")


def load(name):
    return json.loads((results / f"{name}.json").read_text())


def ms(us):
    return f"{us / 1000:.2f}"


def row(label, r):
    lat, out = r["latency"], r["outcomes"]
    v = r.get("verification") or {}
    verified = "passed" if v.get("passed") else ("—" if not v else "FAILED")
    errors = out["busy"] + out["other_errors"] + out["connection_failures"] + out["lost"]
    return (
        f"| {label} | {r['connections']} | {r['sent']:,} | {r['throughput_rps']:,.0f} | {out['ok']:,} "
        f"| {out['sold_out']:,} | {out['already_bought']:,} | {errors:,} | {ms(lat['p50_us'])} "
        f"| {ms(lat['p90_us'])} | {ms(lat['p99_us'])} | {ms(lat['p999_us'])} | {ms(lat['max_us'])} | {verified} |"
    )


print("| target | conns | requests | req/s | ok | sold out | already bought | busy+errors | p50 ms | p90 ms "
      "| p99 ms | p99.9 ms | max ms | verified |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in ("embedded", "durable", "queued"):
    for c in (100, 1000):
        d = load(f"flash-crowd-{name}-c{c}")
        print(row(f"server, {name}", d["server"]))
        print(row("redis-direct (same invocation)", d["redis_direct"]))
print()
print("| run | server ÷ redis-direct |")
print("|---|---|")
for name in ("embedded", "durable", "queued"):
    for c in (100, 1000):
        d = load(f"flash-crowd-{name}-c{c}")
        print(f"| {name}, {c} connections | {d['ratio']:.2f} |")
print()
print("| sustained (never sells out) | conns | orders/s | p50 ms | p99 ms | p99.9 ms | errors |")
print("|---|---|---|---|---|---|---|")
for name in ("embedded", "durable", "queued"):
    r = load(f"sustained-{name}")
    out = r["outcomes"]
    errors = out["busy"] + out["other_errors"] + out["connection_failures"] + out["lost"]
    print(f"| {name} | {r['connections']} | {r['ok_per_s']:,.0f} | {ms(r['latency']['p50_us'])} "
          f"| {ms(r['latency']['p99_us'])} | {ms(r['latency']['p999_us'])} | {errors} |")
print()
h = load("headline")
print("| lifecycle | orders | paid | cancelled by buyer | expired or paid too late | PAY answered order_cancelled | remaining after | "
      "rebuy sold | BUY p99 ms | PAY p50 ms | PAY p99 ms | CANCEL p50 ms | CANCEL p99 ms | verified |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in ["embedded", "durable", "queued"]:
    d = load(f"lifecycle-{name}")
    o, v = d["orders"], d["verification"]
    by = d["settle"]["latency_by_request"]
    print(f"| {name} | {o['orders']:,} | {v['paid']:,} | {o['cancelled']:,} | {v['cancelled'] - o['cancelled']:,} "
          f"| {o['pay_refused']:,} | {v['remaining']:,} | {v['rebuy']['sold']:,} of {v['rebuy']['returned']:,} "
          f"| {ms(d['buy']['latency']['p99_us'])} | {ms(by['pay']['p50_us'])} | {ms(by['pay']['p99_us'])} "
          f"| {ms(by['cancel']['p50_us'])} | {ms(by['cancel']['p99_us'])} | {'passed' if v['passed'] else 'FAILED'} |")
print()
print("Headline:")  # noqa
print(row("server, durable", h["server"]))
print(row("redis-direct", h["redis_direct"]))
print(f"ratio {h['ratio']:.2f}")
print()
a = load("attack")
print("| phase | normal client: sent | ok | busy+errors | p50 ms | p99 ms | p99.9 ms | max ms "
      "| attack connections | refused | bytes sent | server RSS MiB | growth MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for p in a["phases"]:
    n, at = p["normal"], p["attack"] or {}
    out, lat = n["outcomes"], n["latency"]
    errors = out["busy"] + out["other_errors"] + out["connection_failures"] + out["lost"]
    print(f"| {p['phase']} | {n['sent']:,} | {out['ok']:,} | {errors} | {ms(lat['p50_us'])} | {ms(lat['p99_us'])} "
          f"| {ms(lat['p999_us'])} | {ms(lat['max_us'])} | {at.get('opened', 0):,} | {at.get('refused', 0):,} "
          f"| {at.get('bytes_sent', 0) / 2**20:,.1f} MiB | {p['rss_kib'] / 1024:.1f} "
          f"| {p['rss_growth_kib'] / 1024:+.1f} |")
print(f"passed: {a['passed']}")
