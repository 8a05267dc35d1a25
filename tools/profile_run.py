"""Run a benchmark command and profile its processes while it runs: py-spy for Python, JFR for the broker.

    python tools/profile_run.py --out DIR --after 25 --seconds 20 -- plantstream bench pipeline ...

After `--after` seconds every descendant Python process of the command (the bench itself, which is the load
generator of `bench pipeline`; the processor; the storage sink) and every Kafka broker JVM started since the
command began is profiled for `--seconds`: py-spy `raw` (collapsed stacks, with native frames of C
extensions skipped, idle threads dropped), JFR execution samples for the JVM. DIR gets the command's
stdout/stderr, one `<role>.collapsed.gz` per Python process, `kafka.jfr`, and `summary.json`: per process
its CPU seconds over the profiled span and its top functions by own time and by inclusive time.
Works for any checkout (the baseline's too): it only looks at processes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK
    except (OSError, IndexError):
        return 0.0


def gc_seconds(pid: int) -> float | None:
    """The JVM's accumulated GC time (jstat's GCT column), seconds."""
    jstat = shutil.which("jstat") or "/usr/lib/jvm/java-17-openjdk-amd64/bin/jstat"
    try:
        lines = subprocess.run([jstat, "-gc", str(pid)], capture_output=True, text=True, timeout=20).stdout.split("\n")
        head, row = lines[0].split(), lines[1].split()
        return float(row[head.index("GCT")])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def role(cmd: str) -> str | None:
    if "kafka.Kafka" in cmd:
        return "kafka"
    if "apicurio" in cmd:
        return "registry"
    if " process" in cmd and "plantstream" in cmd:
        return "processor"
    if "sink storage" in cmd:
        return "sink-storage"
    if "bench" in cmd and "plantstream" in cmd:
        return "bench-producer"
    return None


def jvms_started_after(t0: float) -> list[int]:
    """Kafka JVMs started after t0 (the bench's own broker is not a child of the bench: it is daemonised)."""
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        cmd = cmdline(int(d.name))
        if "kafka.Kafka" not in cmd:
            continue
        try:
            start = boot + int((d / "stat").read_text().rsplit(")", 1)[1].split()[19]) / CLK_TCK
        except (OSError, IndexError):
            continue
        if start >= t0 - 1:
            found.append(int(d.name))
    return found


def summarize_collapsed(text: str, top: int = 25) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = [re.sub(r" \(.*/", " (", f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    return {
        "samples": total,
        "own": [(f, round(c / total, 4)) for f, c in own.most_common(top)] if total else [],
        "inclusive": [(f, round(c / total, 4)) for f, c in incl.most_common(top)] if total else [],
    }


def summarize_jfr(path: Path, top: int = 25) -> dict[str, Any]:
    jfr = shutil.which("jfr") or "/usr/lib/jvm/java-17-openjdk-amd64/bin/jfr"
    try:
        out = subprocess.run(
            [jfr, "print", "--json", "--events", "jdk.ExecutionSample", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
        events = json.loads(out)["recording"]["events"]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for ev in events:
        frames = ev["values"]["stackTrace"]["frames"] if ev["values"].get("stackTrace") else []
        names = [f"{f['method']['type']['name']}.{f['method']['name']}" for f in frames]
        if names:
            own[names[0]] += 1
            for n in set(names):
                incl[n] += 1
        threads[re.sub(r"[-\d]+$", "", (ev["values"].get("sampledThread") or {}).get("javaName") or "?")] += 1
    total = max(1, len(events))
    return {
        "samples": len(events),
        "threads": [(t, round(c / total, 4)) for t, c in threads.most_common(15)],
        "own": [(f, round(c / total, 4)) for f, c in own.most_common(top)],
        "inclusive": [(f, round(c / total, 4)) for f, c in incl.most_common(top)],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--after", type=float, default=25.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / "stdout.json", "wb") as so, open(out / "stderr.log", "wb") as se:
        bench = subprocess.Popen(cmd, stdout=so, stderr=se)
        time.sleep(a.after)
        procs: dict[str, int] = {}
        for pid in descendants(bench.pid):
            r = role(cmdline(pid))
            if r and r not in procs:
                procs[r] = pid
        for pid in jvms_started_after(t0):
            procs.setdefault("kafka", pid)
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy") or "py-spy"
        jcmd = shutil.which("jcmd") or "/usr/lib/jvm/java-17-openjdk-amd64/bin/jcmd"
        running = []
        gc0 = {r: gc_seconds(p) for r, p in procs.items() if r == "kafka"}
        cpu0 = {r: cpu_s(p) for r, p in procs.items()}
        for r, pid in procs.items():
            if r == "kafka":
                subprocess.run(
                    [
                        jcmd,
                        str(pid),
                        "JFR.start",
                        "name=bench",
                        f"duration={int(a.seconds)}s",
                        "settings=profile",
                        f"filename={out / 'kafka.jfr'}",
                    ],
                    capture_output=True,
                )
            elif r != "registry":
                running.append(
                    (
                        r,
                        subprocess.Popen(
                            [
                                spy,
                                "record",
                                "-p",
                                str(pid),
                                "-d",
                                str(int(a.seconds)),
                                "-r",
                                "97",
                                "--nonblocking",
                                "-f",
                                "raw",
                                "-o",
                                str(out / f"{r}.collapsed"),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        ),
                    )
                )
        time.sleep(a.seconds)
        cpu1 = {r: cpu_s(p) for r, p in procs.items()}
        gc1 = {r: gc_seconds(p) for r, p in procs.items() if r == "kafka"}
        for _r, p in running:
            p.wait(120)
        time.sleep(3)  # JFR writes its file when the duration ends
        summary: dict[str, Any] = {
            "command": cmd,
            "profiled_after_s": a.after,
            "profiled_s": a.seconds,
            "load_average": os.getloadavg(),
            "processes": {},
        }
        for r, pid in procs.items():
            entry: dict[str, Any] = {"pid": pid, "cpu_percent": round(100 * (cpu1[r] - cpu0[r]) / a.seconds, 1)}
            col = out / f"{r}.collapsed"
            if col.exists():
                text = col.read_text()
                entry["profile"] = summarize_collapsed(text)
                with gzip.open(out / f"{r}.collapsed.gz", "wt") as gz:
                    gz.write(text)
                col.unlink()
            if r == "kafka" and (out / "kafka.jfr").exists():
                entry["profile"] = summarize_jfr(out / "kafka.jfr")
            if r in gc0 and gc0[r] is not None and gc1.get(r) is not None:
                # JFR samples Java threads only: the collector's own CPU shows in jstat's GC time
                entry["gc_time_percent"] = round(100 * (gc1[r] - gc0[r]) / a.seconds, 1)
            summary["processes"][r] = entry
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        rc = bench.wait()
    return rc


if __name__ == "__main__":
    sys.exit(main())
