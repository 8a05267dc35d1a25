"""Before/after of the dashboard's history API, server side, requests alternated between two checkouts.

    python tools/dashboard_history_ab.py --before /work/baseline [--after .] [--rounds 15] [--json-out FILE]

Each side fills its own store with its own `plantstream bench dashboard` code (24 h x 10 tags of 1 s samples,
raw samples only) and serves it with `plantstream dashboard --no-live` from its own virtualenv
(<checkout>/.venv); then GET /api/history (a fixed 24 h and the page's default request) goes to after and
before in turn, `rounds` times. Medians in ms and response bytes go to stdout as JSON with the load average:
on a busy machine a figure is only good as a ratio taken in the same run. Run it under the heavy lock.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ASSET = "bench.site.area.line.machine1"

# run inside each side's interpreter: fill a store with that side's bench code, serve it, print the port
SERVE = """
import sys, tempfile, time
from pathlib import Path
try:
    from plantstream.bench import dashboard as b
except ImportError:  # the round's starting layout
    from plantstream.dashboard import bench as b
with tempfile.TemporaryDirectory(prefix="dash-ab-") as d:
    tmp = Path(d)
    port = b.free_port()
    s = b.bench_settings(tmp, 10, 1.0, port)
    b.fill_store(s, 24.0, 10, 1.0, int(time.time() * 1e6))
    proc = b.start_server(s, tmp)
    try:
        b.wait_port(port, 60, proc=proc)
        print(port, flush=True)
        sys.stdin.read()
    finally:
        b.stop_server(proc)
"""


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, type=Path)
    ap.add_argument("--after", default=Path("."), type=Path)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTSTREAM_")}
    sides = {"after": args.after.resolve(), "before": args.before.resolve()}
    procs: dict[str, subprocess.Popen[str]] = {}
    ports: dict[str, int] = {}
    load = [os.getloadavg()]
    try:
        for name, root in sides.items():
            procs[name] = subprocess.Popen(
                [str(root / ".venv/bin/python"), "-c", SERVE],
                cwd=root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert procs[name].stdout is not None
            ports[name] = int(procs[name].stdout.readline())
        # the page's default request: "auto" where the server knows ranges, else its default (history_hours)
        paths = {
            "fixed_24h": f"/api/history?asset={ASSET}&hours=24",
            "default": f"/api/history?asset={ASSET}",
        }
        times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in paths} for n in sides}
        size: dict[str, dict[str, int]] = {n: {} for n in sides}
        with httpx.Client(timeout=60) as c:
            for name in sides:  # first requests open the store and warm its cache
                c.get(f"http://127.0.0.1:{ports[name]}{paths['default']}").raise_for_status()
            for i in range(args.rounds):
                for name in ("after", "before") if i % 2 == 0 else ("before", "after"):
                    for key, path in paths.items():
                        t = time.perf_counter()
                        r = c.get(f"http://127.0.0.1:{ports[name]}{path}")
                        r.raise_for_status()
                        times[name][key].append(round((time.perf_counter() - t) * 1000, 1))
                        size[name][key] = len(r.content)
    finally:
        for p in procs.values():
            if p.stdin is not None:
                p.stdin.close()
            p.wait(30)
    load.append(os.getloadavg())
    medians = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in times.items()}
    out = {
        "what": "GET /api/history, 24 h x 10 tags of raw 1 s samples, after and before alternated",
        "rounds": args.rounds,
        "load_average_start_end": load,
        "medians_ms": medians,
        "ratio_after_to_before": {k: round(medians["after"][k] / medians["before"][k], 2) for k in paths},
        "response_bytes": size,
        "runs_ms": times,
    }
    text = json.dumps(out, indent=1)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
