"""Load benchmark of the website on loopback: `papersift serve` with N uvicorn workers under 50 clients.

    .venv/bin/python bench/web_load.py            # full corpus in bench/results/work/web; 1 then 2 workers, 20 s each
    .venv/bin/python bench/web_load.py --data-dir /tmp/dev --workers 1 --seconds 5 --out /tmp/web_load.json

Per worker count: start `papersift --data-dir D serve --port P --workers N` as a separate process, time until it
answers and the first (cold) search, warm up over every scenario's URLs, run each scenario for --seconds with
--clients keep-alive connections, stop the server with SIGINT. Scenarios, over real URLs from catalog.db:
paper `/papers/<id>` (5,000 random ids), search `/search?q=` (3-8 consecutive words of random titles, plus short
topical queries), lists `/` and `/weekly`, related `/api/papers/<id>/related`. Each reports requests/s, p50/p90/
p99/max latency, status codes, socket errors/timeouts, server RSS and CPU (all its processes, from /proc), the
generator's CPU, and three spot-checked responses (the paper page's <h1> is its title, the query is echoed...).
Generator: wrk, one thread, a Lua script picking a random URL per request and printing exact percentiles from
wrk's 1-us histogram; without wrk, an asyncio httpx client in this process (it competes for the server's CPU).
--profile DIR adds a py-spy profile of the server per scenario (it perturbs the figures).
Targets (paper pages, 50 clients): >= 200 requests/s, p99 <= 250 ms, 0 errors.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import html
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"paper_rps_min": 200, "paper_p99_ms_max": 250, "errors_max": 0, "clients": 50}
TOPICAL = ["transformer", "graph neural networks", "reinforcement learning", "diffusion models", "quantum", "dark matter",
           "contrastive learning", "federated learning", "object detection", "speech recognition", "large language models"]
WRK_LUA = r"""
local threads, n, headers = {}, 0, {}
function setup(t) n = n + 1; t:set("tid", n); table.insert(threads, t) end
function init(args)
  urls = {}; codes = {}
  for line in io.lines(args[1]) do urls[#urls + 1] = line end
  if args[2] == "close" then headers["Connection"] = "close" end
  math.randomseed(os.time() * 1000 + tid)
end
function request() return wrk.format("GET", urls[math.random(#urls)], headers) end
function response(status, headers, body) codes[status] = (codes[status] or 0) + 1 end
function done(s, lat, req)
  local c, parts, e = {}, {}, s.errors
  for _, t in ipairs(threads) do for k, v in pairs(t:get("codes")) do c[tostring(k)] = (c[tostring(k)] or 0) + v end end
  for k, v in pairs(c) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "codes": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d}}\n', s.requests, s.duration, s.bytes, lat:percentile(50), lat:percentile(90), lat:percentile(99),
    lat.max, lat.mean, table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout))
end
"""


def sample_urls(data_dir: Path, rng: random.Random) -> tuple[dict[str, list[str]], dict[str, str], int]:
    db = sqlite3.connect(f"file:{data_dir / 'catalog.db'}?mode=ro", uri=True)
    rows = [r for r in db.execute("SELECT arxiv_id, title FROM papers") if r[0]]
    db.close()
    titles = dict(rng.sample(rows, min(5000, len(rows))))
    queries = []
    for _, title in rng.sample(rows, min(2000, len(rows))):
        words = [w for w in (re.sub(r"[^\w\-]", "", w) for w in title.split()) if w]
        if len(words) >= 3:
            k = rng.randint(3, min(8, len(words)))
            start = rng.randint(0, len(words) - k)
            queries.append(" ".join(words[start:start + k]))
    queries += TOPICAL * 5  # short queries as people type them, about 3% of the list
    ids = [urllib.parse.quote(a, safe="/.:") for a in titles]
    return ({"paper": [f"/papers/{a}" for a in ids], "search": [f"/search?q={urllib.parse.quote_plus(q)}" for q in queries],
             "lists": ["/", "/weekly"], "related": [f"/api/papers/{a}/related" for a in rng.sample(ids, len(ids))]},
            titles, len(rows))


def fetch(base: str, url: str, timeout: float = 60) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def spot_check(base: str, name: str, urls: list[str], titles: dict[str, str], rng: random.Random) -> list[dict]:
    """Fetch three URLs of the scenario and check they are the pages meant, not an error page or a redirect."""
    out = []
    for url in rng.sample(urls, min(3, len(urls))):
        status, body = fetch(base, url)
        aid = urllib.parse.unquote(url.split("/papers/")[-1].removesuffix("/related"))
        if name == "paper":
            h1 = re.search(r"<h1[^>]*>(.*?)</h1>", body, re.S)
            shown = html.unescape(re.sub(r"<[^>]+>", "", h1.group(1))) if h1 else ""
            ok = shown.split() == titles[aid].split()
        elif name == "related":
            data = json.loads(body) if status == 200 else None
            items = data if isinstance(data, list) else next((v for v in (data or {}).values() if isinstance(v, list)), [])
            ok = len(items) > 0
        elif name == "search":
            ok = html.escape(urllib.parse.unquote_plus(url.split("q=", 1)[1])) in body and "/papers/" in body
        else:
            ok = body.count("/papers/") >= 5
        out.append({"url": url, "status": status, "bytes": len(body), "ok": bool(ok and status == 200)})
    return out


def server_usage(pid: int) -> dict:
    """RSS and CPU seconds summed over the server and all its descendants (uvicorn workers), from /proc."""
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        try:
            kids.setdefault(int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(p.name))
        except (OSError, IndexError, ValueError):
            pass
    rss, cpu, todo = 0, {}, [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            rss += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1))
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[str(p)] = round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
        except (OSError, AttributeError):
            pass
    return {"rss_mb": round(rss / 1024, 1), "cpu_s": round(sum(cpu.values()), 2), "cpu_s_by_pid": cpu}


def settle(pid: int, limit: float = 120) -> float:
    """Wait until the server is idle (under 0.1 core for 1 s) so left-over warm-up work (a model still
    loading in a worker) does not land in the first scenario; returns the seconds waited."""
    t0, last = time.perf_counter(), server_usage(pid)["cpu_s"]
    while time.perf_counter() - t0 < limit:
        time.sleep(1)
        now = server_usage(pid)["cpu_s"]
        if now - last < 0.1:
            break
        last = now
    return round(time.perf_counter() - t0, 1)


def run_wrk(base: str, urls: list[str], clients: int, seconds: float, close: bool = False, lua: str = "") -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(urls) + "\n")
    try:
        cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", lua, base, "--", f.name,
               "close" if close else "keep-alive"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(f.name)
    r = json.loads(out.split("WRKJSON ", 1)[1].splitlines()[0])
    ms = {k.removesuffix("_us") + "_ms": round(r[k] / 1000, 1) for k in ("p50_us", "p90_us", "p99_us", "max_us", "mean_us")}
    return {"requests": r["requests"], "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1), **ms,
            "codes": r["codes"], "socket_errors": r["errors"], "mb_per_s": round(r["bytes"] / r["duration_us"], 2)}


def run_python(base: str, urls: list[str], clients: int, seconds: float, close: bool = False) -> dict:
    import httpx

    lat, codes, errors = [], {}, {"connect": 0, "read": 0, "timeout": 0}

    async def client_loop(client, t0):
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            try:
                status = str((await client.get(random.choice(urls))).status_code)
                codes[status] = codes.get(status, 0) + 1
                lat.append(time.perf_counter() - t)
            except httpx.HTTPError as e:
                errors["timeout" if isinstance(e, httpx.TimeoutException) else "read"] += 1

    async def main():
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        headers = {"Connection": "close"} if close else {}
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10, headers=headers) as client:
            t0 = time.perf_counter()
            await asyncio.gather(*(client_loop(client, t0) for _ in range(clients)))
            return time.perf_counter() - t0
    took = asyncio.run(main())
    lat.sort()
    ms = {f"{k}_ms": round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None
          for k, q in (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1))}
    return {"requests": len(lat), "rps": round(len(lat) / took, 1), **ms,
            "mean_ms": round(sum(lat) / max(1, len(lat)) * 1000, 1), "codes": codes, "socket_errors": errors}


def others() -> list[str]:  # the busiest processes: what else competed for the CPUs
    ps = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,rss,etime,args", "--sort=-pcpu"], capture_output=True, text=True)
    return [line[:160] for line in ps.stdout.splitlines()[:8]]


def start_server(data_dir: Path, workers: int, env: dict | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    """`papersift --data-dir D serve --workers N` on a free loopback port, once it answers `/`: (the process,
    its base URL, its output lines so far — drained so its pipe never fills). `env` adds to os.environ."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    server = subprocess.Popen([str(ROOT / ".venv/bin/papersift"), "--data-dir", str(data_dir), "serve", "--port",
                               str(port), "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True,
                              env={**os.environ, "PAPERSIFT_HOST": "127.0.0.1", **(env or {})})
    log: list[str] = []
    threading.Thread(target=log.extend, args=(server.stdout,), daemon=True).start()
    base, t0 = f"http://127.0.0.1:{port}", time.perf_counter()
    while True:
        try:
            if fetch(base, "/", timeout=5)[0] == 200:
                return server, base, log
        except OSError:
            pass
        if server.poll() is not None or time.perf_counter() - t0 > 600:
            stop_server(server)
            raise SystemExit(f"server exited ({server.returncode}) or is stuck: {''.join(log)[-2000:]}")
        time.sleep(0.2)


def stop_server(server: subprocess.Popen):
    """SIGINT (uvicorn's graceful stop), SIGKILL to the group after 30 s; the exit status, or why not."""
    try:
        os.kill(server.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        return server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        return f"killed after 30 s: {server.wait()}"


def bench_workers(args, workers: int, urls, titles, generate, rng, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    server, base, log = start_server(args.data_dir, workers, env)
    result: dict = {"workers": workers}
    try:
        result.update(startup_s=round(time.perf_counter() - t0, 2), after_start=server_usage(server.pid))
        t1 = time.perf_counter()
        if urls.get("search"):
            result["first_search_status"] = fetch(base, urls["search"][0])[0]  # cold: may load the model and indexes
            result["first_search_s"] = round(time.perf_counter() - t1, 2)
        generate(base, [u for name in urls for u in urls[name][:400]], args.clients, args.warmup)  # every worker warm
        result["settle_s"] = settle(server.pid)
        result["after_warmup"], result["scenarios"] = server_usage(server.pid), {}
        # paper_close: paper pages, a new connection per request, as many short visits make; with keep-alive
        # the 50 connections are accepted once, and with several workers not necessarily spread evenly
        for name, scenario_urls in [*urls.items(), ("paper_close", urls["paper"])]:
            if getattr(args, "only", None) and name not in args.only:
                continue
            checks = spot_check(base, name.removesuffix("_close"), scenario_urls, titles, rng)
            before, load0, kids0 = server_usage(server.pid), os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
            spy = args.profile and subprocess.Popen(  # collapsed stacks of every server process, sampled
                [str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(server.pid), "--subprocesses", "--nonblocking",
                 "--format", "raw", "--duration", str(int(args.seconds)), "-o", str(args.profile / f"{workers}w_{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stats = generate(base, scenario_urls, args.clients, args.seconds, close=name.endswith("_close"))
            after = server_usage(server.pid)
            if spy:
                spy.wait()
            kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's CPU (and py-spy's, with --profile)
            gen_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
            non2xx = sum(v for k, v in stats["codes"].items() if not k.startswith("2"))
            per_process = sorted((round((c - before["cpu_s_by_pid"].get(p, 0)) / args.seconds, 2)
                                  for p, c in after["cpu_s_by_pid"].items()), reverse=True)  # how evenly workers share
            result["scenarios"][name] = {**stats, "non_2xx": non2xx, "distinct_urls": len(scenario_urls),
                                         "server_rss_mb": after["rss_mb"], "server_cpu_cores_per_process": per_process,
                                         "server_cpu_cores": round((after["cpu_s"] - before["cpu_s"]) / args.seconds, 2),
                                         # CPU per request: a ceiling of cpus / this, and less sensitive to a busy machine
                                         "server_cpu_ms_per_request": round(1000 * (after["cpu_s"] - before["cpu_s"])
                                                                            / max(1, stats["requests"]), 1),
                                         "generator_cpu_cores": round(gen_cpu / args.seconds, 3),
                                         "loadavg_before": load0, "spot_checks": checks}
            print(f"workers={workers} {name:11s} {stats['rps']:8.1f} req/s  p50 {stats['p50_ms']} ms  p99 "
                  f"{stats['p99_ms']} ms  max {stats['max_ms']} ms  non-2xx {non2xx}  errors {stats['socket_errors']}  "
                  f"checks {'ok' if all(c['ok'] for c in checks) else 'FAILED'}", flush=True)
    finally:
        result["stop_returncode"] = stop_server(server)
    result["server_log_tail"] = [line.rstrip()[:300] for line in log[-8:]]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / "bench/results/work/web")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="uvicorn worker counts to try (default 1 2)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20, help="per scenario")
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/web_load.json")
    ap.add_argument("--note", default="", help="free text stored in the JSON, e.g. what the run is (dev data, busy machine)")
    ap.add_argument("--only", nargs="*", help="run only these scenarios (paper search lists related paper_close): "
                    "for quick comparisons; the summary needs paper, search and paper_close")
    ap.add_argument("--profile", type=Path, help="folder for py-spy collapsed stacks per scenario (perturbs figures)")
    args = ap.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    (lua := Path(tempfile.mkstemp(suffix=".lua")[1])).write_text(WRK_LUA)
    generate = functools.partial(run_wrk, lua=str(lua)) if use_wrk else run_python
    urls, titles, papers = sample_urls(args.data_dir, rng)

    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip() if use_wrk else ""
    out = {"benchmark": "web_load", "note": args.note, "data_dir": str(args.data_dir), "papers": papers, "cpus": os.cpu_count(),
           "git_commit": git("rev-parse", "HEAD"), "git_dirty_files": len(git("status", "--porcelain").splitlines()),
           "generator": f"{wrk}, 1 thread, Lua: random URL per request" if use_wrk else f"python {sys.version.split()[0]} httpx",
           "clients": args.clients, "seconds": args.seconds, "warmup_s": args.warmup,
           "loadavg_before": os.getloadavg(), "processes_before": others(), "runs": []}
    for w in args.workers:
        out["runs"].append(bench_workers(args, w, urls, titles, generate, rng))
    out["loadavg_after"], out["processes_after"] = os.getloadavg(), others()
    lua.unlink()
    measured = {}
    for run in out["runs"]:
        if not all(name in run["scenarios"] for name in ("paper", "search", "paper_close")):
            continue
        p, s, c = (run["scenarios"][name] for name in ("paper", "search", "paper_close"))
        errors = p["non_2xx"] + sum(p["socket_errors"].values())
        ok = {"rps_pass": p["rps"] >= TARGETS["paper_rps_min"], "p99_pass": p["p99_ms"] <= TARGETS["paper_p99_ms_max"],
              "errors_pass": errors <= TARGETS["errors_max"]}
        measured[f"workers_{run['workers']}"] = {"paper_rps": p["rps"], "paper_p99_ms": p["p99_ms"], "paper_errors": errors,
                                                 **ok, "pass": all(ok.values()) and args.clients >= TARGETS["clients"],
                                                 "search_rps": s["rps"], "search_p99_ms": s["p99_ms"],
                                                 "paper_close_rps": c["rps"], "paper_close_p99_ms": c["p99_ms"]}
    out["targets"] = {"target": TARGETS, "measured": measured, "pass_any": any(m["pass"] for m in measured.values())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["targets"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
