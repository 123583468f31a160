#!/usr/bin/env python3
"""Stand-in agents for `make demo`: every host of the demo database polls
/host at the interval the bridge gives it and, when granted a run, "runs"
for a few seconds (no Puppet here) and posts a report with the run id.
The real node daemon is pvc-agent; this only makes the scheduler visible.

Usage: demo-agents.py BASE_URL HOSTS_FILE
"""
import json
import random
import sys
import threading
import time
import urllib.request


def poll(base, host, trigger=None):
    url = f"{base}/host?fqdn={host}" + (f"&trigger={trigger}" if trigger else "")
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def report(base, host, run_id, trigger, mode):
    body = json.dumps({"run_id": run_id, "trigger": trigger, "mode": mode,
                       "exit_code": 0, "duration_secs": 3.0}).encode()
    req = urllib.request.Request(f"{base}/report?fqdn={host}", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def agent(base, host, lock):
    rng = random.Random(host)
    time.sleep(rng.uniform(0, 5))
    while True:
        try:
            a = poll(base, host)
        except OSError as e:
            with lock:
                print(f"{host}: bridge unreachable ({e}); retrying", flush=True)
            time.sleep(10)
            continue
        if a.get("PVC_RUN") == "1":
            with lock:
                print(f"{time.strftime('%H:%M:%S')} {host}: run granted on "
                      f"{a['PVC_PUPPET_MASTER']} ({a['PVC_RUN_TRIGGER']}, {a['PVC_RUN_MODE']})",
                      flush=True)
            time.sleep(rng.uniform(2, 6))
            report(base, host, a["PVC_RUN_ID"], a["PVC_RUN_TRIGGER"], a["PVC_RUN_MODE"])
        time.sleep(int(a.get("PVC_CHECK_INTERVAL", "60")))


def main():
    base, hosts_file = sys.argv[1], sys.argv[2]
    hosts = [h.strip() for h in open(hosts_file) if h.strip()]
    lock = threading.Lock()
    for host in hosts:
        threading.Thread(target=agent, args=(base, host, lock), daemon=True).start()
    print(f"demo agents: {len(hosts)} hosts polling {base}/host", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
