#!/usr/bin/env python3
"""Checks forwarding against a REAL Foreman (which CI cannot run): uploads
go to the bridge, the bridge forwards them, and Foreman's own API and ENC
are compared with the bridge's. Standard library only.

Set up first (see docs/forwarding.md, "Verified against a real Foreman"):
a Foreman 3.13 + foreman_puppet 8 server, `pvc-bridge migrate` run on its
database, and `pvc-bridge serve` with `database.primary` = that database
and `foreman.url`/`username`/`password` = that Foreman. Then:

  scripts/verify-foreman.py [--bridge URL] [--foreman URL] [--user U --password P] [--host NAME]

Prints one line per check (ok / FAILED) and what it measured; exits 1 if a
check failed. Uses a host name Foreman does not know yet (default
verify-<time>.example.com), so it can be run again.
"""
import argparse
import base64
import copy
import json
import sys
import time
import urllib.error
import urllib.request


def request(url, body=None, auth=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    r.add_header("Accept", "application/json,version=2")
    if data:
        r.add_header("Content-Type", "application/json")
    if auth:
        r.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def facts_of(host, ip):
    short, _, domain = host.partition(".")
    return {
        "fqdn": host, "hostname": short, "domain": domain,
        "networking": {"fqdn": host, "hostname": short, "domain": domain, "ip": ip,
                       "mac": "52:54:00:aa:cc:42", "primary": "eth0",
                       "interfaces": {"eth0": {"ip": ip, "mac": "52:54:00:aa:cc:42",
                                               "netmask": "255.255.255.0", "mtu": 1500}}},
        "ipaddress": ip, "macaddress": "52:54:00:aa:cc:42",
        # The legacy interface facts Foreman's Puppet fact parser reads NICs from.
        "interfaces": "eth0", "ipaddress_eth0": ip, "macaddress_eth0": "52:54:00:aa:cc:42",
        "netmask_eth0": "255.255.255.0", "mtu_eth0": 1500,
        "os": {"name": "Debian", "family": "Debian", "architecture": "amd64",
               "release": {"full": "12.5", "major": "12", "minor": "5"}},
        "operatingsystem": "Debian", "operatingsystemrelease": "12.5", "osfamily": "Debian",
        "architecture": "amd64", "processors": {"count": 2},
        "system_uptime": {"seconds": 100}, "uptime_seconds": 100,
        "_type": "puppet", "_timestamp": time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime()),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bridge", default="http://127.0.0.1:8090")
    p.add_argument("--foreman", default="http://127.0.0.1:3999")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="changeme-123")
    p.add_argument("--host", default=f"verify-{int(time.time())}.example.com")
    a = p.parse_args()
    B, F, H, auth = a.bridge.rstrip("/"), a.foreman.rstrip("/"), a.host, f"{a.user}:{a.password}"
    failed = []

    def check(what, ok, detail=""):
        print(f"{'ok' if ok else 'FAILED'}  {what}{': ' + detail if detail else ''}", flush=True)
        if not ok:
            failed.append(what)

    def upload(facts):
        return request(B + "/api/v2/hosts/facts", {"facts": facts, "name": H, "certname": H})

    def foreman_host():
        st, text = request(F + "/api/v2/hosts/" + H, auth=auth)
        return json.loads(text) if st == 200 else {}

    def both_encs():
        return request(B + f"/node/{H}?format=yml"), request(F + f"/node/{H}?format=yml")

    def wait(what, cond, limit=30):
        end = time.time() + limit
        while time.time() < end:
            if cond():
                return True
            time.sleep(0.5)
        return False

    check("Foreman does not know the host yet", request(F + "/api/v2/hosts/" + H, auth=auth)[0] == 404)
    facts = facts_of(H, "192.168.10.21")
    t = time.time()
    st, text = upload(facts)
    took = time.time() - t
    answer = json.loads(text) if st == 201 else {}
    check("a new host's facts are forwarded during the upload",
          st == 201 and answer.get("foreman") == "forwarded", f"{st} {answer.get('foreman')}, {took:.2f} s")
    host = foreman_host()
    check("Foreman created the host from them", host.get("ip") == "192.168.10.21",
          ", ".join(f"{k}={host.get(k)}" for k in ("ip", "domain_name", "operatingsystem_name")))
    (bs, benc), (fs, fenc) = both_encs()
    check("the bridge's ENC right after is Foreman's, byte for byte", bs == fs == 200 and benc == fenc)

    noise = copy.deepcopy(facts)
    noise["uptime_seconds"] = noise["system_uptime"]["seconds"] = 5000
    answer = json.loads(upload(noise)[1])
    check("volatile-only changes are not forwarded", answer.get("foreman") == "not_needed", answer.get("outcome"))

    more = copy.deepcopy(noise)
    more["processors"] = {"count": 16}
    answer = json.loads(upload(more)[1])
    check("other real changes are queued", answer.get("foreman") == "queued")
    check("and arrive from the outbox", wait("processors", lambda: '"16"' in request(
        F + f"/api/v2/hosts/{H}/facts?search=processors::count", auth=auth)[1]))

    moved = json.loads(json.dumps(more).replace("192.168.10.21", "192.168.10.77"))
    answer = json.loads(upload(moved)[1])
    check("an ENC-relevant change (IP) is forwarded during the upload", answer.get("foreman") == "forwarded")
    (bs, benc), (fs, fenc) = both_encs()
    check("both ENCs show it, identical", benc == fenc and "192.168.10.77" in benc)

    for n, (applied, failed_count, label) in enumerate([(2, 0, "Active"), (0, 1, "Error")]):
        report = {"host": H, "reported_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + n)),
                  "status": {"applied": applied, "restarted": 0, "failed": failed_count,
                             "failed_restarts": 0, "skipped": 0, "pending": 0},
                  "metrics": {"time": {"total": 1.5}}, "logs": []}
        st, _ = request(B + "/api/v2/config_reports", {"config_report": report})
        check(f"a config report (applied {applied}, failed {failed_count}) is taken", st == 201)
        check(f"Foreman's configuration status becomes {label}",
              wait(label, lambda: foreman_host().get("configuration_status_label") == label))
        time.sleep(1.1)

    print(f"{len(failed)} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
