#!/usr/bin/env python3
"""Fact uploads for bench/facts.sh: a facter 4 fact set generator and an
HTTP/1.1 POST driver, standard library only.

  facts_drive.py sample CERTNAME            one body (facter JSON), for a look
  facts_drive.py run --port P --hosts FILE --state FILE (--warmup | --concurrency C | --rate R) ...
  facts_drive.py sample-loop --out FILE ... one line of outbox/audit/stand-in numbers a second

THE BODIES. Each host gets a realistic fact set (networking with several
interfaces, mountpoints, partitions, disks, processors, os, memory, ssh keys,
dmi, ruby, identity, ...; about 30 KB of compact JSON) built once at start
from a generator seeded by its certname, and turned into a template whose
few varying values are placeholders. Every upload changes the volatile facts
(system_uptime, load_averages, free/used memory and mountpoint space: left
out of the digest by the bridge's default `writes.volatile_facts`), so an
upload that changes nothing else is stored with outcome `unchanged`. A share
(--change-share, default 10%) also carries a real change: a package version
fact or the size of a mountpoint (outcome `changed`, queued for Foreman), or
for --enc-share of those an interface address (`networking` is an ENC fact:
forwarded during the upload). Each host's counters (uploads, changes) are
kept in --state between invocations, so every run continues where the last
one left off, and the first upload of a host (--warmup) is its `new` one.
A share of uploads (--foreman-share) goes to Foreman's own
`POST /api/v2/hosts/facts` with the stock ENC script's payload
(`{"facts": ..., "name": ..., "certname": ...}`) instead of `POST /facts/<certname>`.

THE DRIVER, modelled on bench/drive.py:
  --warmup           every host once, in list order, closed loop (--concurrency).
  --concurrency C    CLOSED LOOP with C keep-alive connections for --duration s.
  --rate R           OPEN LOOP: upload i is due at t0 + i/R for --duration s,
                     whatever happened to earlier ones (a new connection is
                     opened when all are busy); latency counts from the
                     INTENDED send time, so a stall shows (no coordinated
                     omission); the service time (from the actual send) too.
Prints one JSON object: counts, statuses, the outcomes and forwarding the
bridge answered, latency percentiles (ms), and the driver's own CPU time.
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
import urllib.request

# ---------------------------------------------------------------------------
# The fact set
# ---------------------------------------------------------------------------
GIB = 1024 ** 3
MIB = 1024 ** 2


def human(n):
    """Facter's size strings ("15.51 GiB")."""
    for unit, size in (("TiB", 1024 ** 4), ("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def hexbytes(rng, n):
    return "".join(f"{rng.randrange(256):02x}" for _ in range(n))


def mac(rng):
    return ":".join(f"{b:02x}" for b in [0x52, 0x54, 0x00] + [rng.randrange(256) for _ in range(3)])


def ssh_key(rng, kind, bits):
    body = "AAAA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                            for _ in range(bits))
    return {"fingerprints": {"sha1": f"SSHFP {kind[1]} 1 {hexbytes(rng, 20)}",
                             "sha256": f"SSHFP {kind[1]} 2 {hexbytes(rng, 32)}"},
            "key": body, "type": kind[0]}


def facts_for(certname, ip_token="@@ip2@@"):
    """A facter 4 fact set of one host, with placeholders (`@@name@@`) for
    what changes between its uploads. Deterministic per certname."""
    rng = random.Random(hashlib.sha256(certname.encode()).digest())
    short, _, domain = certname.partition(".")
    domain = domain or "bench.test"
    cores = rng.choice([4, 8, 16])
    mem_total = rng.choice([8, 16, 32, 64]) * GIB
    swap_total = 2 * GIB
    o = rng.randrange(1, 250)
    ip = f"10.20.{o}.{rng.randrange(2, 250)}"

    interfaces = {}
    # Container hosts have a veth per container: the interface list is long.
    names = ["lo", "eth0", "eth1", "eth2", "docker0"] + [f"veth{hexbytes(rng, 3)}" for _ in range(rng.choice([4, 6, 8]))]
    for i, name in enumerate(names):
        if name == "lo":
            addr, net, mask, m = "127.0.0.1", "127.0.0.0", "255.0.0.0", None
        elif name == "eth1":
            addr, net, mask, m = ip_token, f"10.200.{o}.0", "255.255.255.0", mac(rng)
        else:
            a = ip if name == "eth0" else f"172.{16 + i}.{o}.1"
            addr, net, mask, m = a, a.rsplit(".", 1)[0] + ".0", "255.255.255.0", mac(rng)
        v6 = f"fe80::5054:ff:fe{rng.randrange(256):02x}:{rng.randrange(65536):04x}"
        iface = {
            "bindings": [{"address": addr, "netmask": mask, "network": net}],
            "bindings6": [{"address": v6, "netmask": "ffff:ffff:ffff:ffff::", "network": "fe80::", "scope6": "link",
                           "flags": ["permanent"]}],
            "ip": addr, "ip6": v6, "mtu": 65536 if name == "lo" else 1500, "netmask": mask,
            "netmask6": "ffff:ffff:ffff:ffff::", "network": net, "network6": "fe80::", "scope6": "link",
            "operational_state": "up", "duplex": "full", "speed": 10000,
        }
        if m:
            iface["mac"] = m
            iface["dhcp"] = f"10.20.{o}.1"
            iface["physical"] = not name.startswith(("docker", "virbr"))
            iface["driver"] = "virtio_net"
        interfaces[name] = iface

    disks = {}
    partitions = {}
    for d in "abc"[: rng.choice([2, 3])]:
        size = rng.choice([50, 100, 200, 500]) * GIB
        disks[f"sd{d}"] = {"model": "QEMU HARDDISK", "serial": f"drive-scsi0-0-0-{ord(d) - 97}",
                           "size": human(size), "size_bytes": size, "type": "hdd", "vendor": "QEMU"}
        for p in range(1, 7):
            psize = size // 6
            partitions[f"/dev/sd{d}{p}"] = {
                "filesystem": "ext4" if p > 1 else "vfat", "label": f"part{p}",
                "mount": {1: "/boot/efi", 2: "/", 3: "/var", 4: "/data"}.get(p, f"/srv/{p}") if d == "a" else f"/srv/disk{d}{p}",
                "partlabel": f"primary{p}", "partuuid": f"{hexbytes(rng, 4)}-{hexbytes(rng, 2)}-{hexbytes(rng, 2)}-"
                f"{hexbytes(rng, 2)}-{hexbytes(rng, 6)}", "size": human(psize), "size_bytes": psize,
                "uuid": f"{hexbytes(rng, 4)}-{hexbytes(rng, 2)}-{hexbytes(rng, 2)}-{hexbytes(rng, 2)}-{hexbytes(rng, 6)}",
            }

    mountpoints = {}
    mounts = ["/", "/boot/efi", "/var", "/data", "/tmp", "/run", "/dev/shm", "/srv/backup"] + [
        f"/var/lib/docker/overlay2/{hexbytes(rng, 32)}/merged" for _ in range(N_MOUNTS - 8)]
    for i, mp in enumerate(mounts):
        size = (rng.choice([10, 20, 50, 100]) * GIB) if mp != "/data" else "@@data_size@@"
        mountpoints[mp] = {
            "available": f"@@mp{i}_avail@@", "available_bytes": f"@@mp{i}_avail_b@@", "capacity": f"@@mp{i}_cap@@",
            "device": f"/dev/sda{i + 1}", "filesystem": "tmpfs" if mp in ("/tmp", "/run", "/dev/shm") else "ext4",
            "options": ["rw", "relatime", "errors=remount-ro", "discard"] + (["nosuid", "nodev"] if i > 3 else []),
            "size": "@@data_size_h@@" if mp == "/data" else human(size), "size_bytes": size,
            "used": f"@@mp{i}_used@@", "used_bytes": f"@@mp{i}_used_b@@",
        }

    facts = {
        "aio_agent_version": "7.28.0",
        "augeas": {"version": "1.14.0"},
        "disks": disks,
        "dmi": {
            "bios": {"release_date": "04/01/2014", "vendor": "SeaBIOS", "version": "1.16.2-debian-1.16.2-1"},
            "board": {"manufacturer": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)"},
            "chassis": {"asset_tag": "", "type": "Other"},
            "manufacturer": "QEMU", "product": {"name": "Standard PC (Q35 + ICH9, 2009)",
                                                "serial_number": hexbytes(rng, 8), "uuid": hexbytes(rng, 16)},
        },
        "facterversion": "4.5.2",
        "filesystems": "btrfs,ext2,ext3,ext4,fuseblk,iso9660,squashfs,tmpfs,vfat,xfs",
        "fips_enabled": False,
        "hypervisors": {"kvm": {}},
        "identity": {"gid": 0, "group": "root", "privileged": True, "uid": 0, "user": "root"},
        "is_virtual": True,
        "kernel": "Linux", "kernelmajversion": "6.1", "kernelrelease": "6.1.0-18-amd64", "kernelversion": "6.1.0",
        "load_averages": {"15m": "@@load15@@", "1m": "@@load1@@", "5m": "@@load5@@"},
        "memory": {
            "swap": {"available": "@@swap_avail@@", "available_bytes": "@@swap_avail_b@@",
                     "capacity": "@@swap_cap@@", "total": human(swap_total), "total_bytes": swap_total,
                     "used": "@@swap_used@@", "used_bytes": "@@swap_used_b@@"},
            "system": {"available": "@@mem_avail@@", "available_bytes": "@@mem_avail_b@@",
                       "capacity": "@@mem_cap@@", "total": human(mem_total), "total_bytes": mem_total,
                       "used": "@@mem_used@@", "used_bytes": "@@mem_used_b@@"},
        },
        "mountpoints": mountpoints,
        "networking": {
            "domain": domain, "fqdn": certname, "hostname": short, "interfaces": interfaces,
            "ip": ip, "ip6": interfaces["eth0"]["ip6"], "mac": interfaces["eth0"]["mac"], "mtu": 1500,
            "netmask": "255.255.255.0", "netmask6": "ffff:ffff:ffff:ffff::", "network": ip.rsplit(".", 1)[0] + ".0",
            "network6": "fe80::", "primary": "eth0", "scope6": "link",
        },
        "os": {
            "architecture": "amd64", "distro": {"codename": "bookworm", "description": "Debian GNU/Linux 12 (bookworm)",
                                                "id": "Debian", "release": {"full": "12.5", "major": "12", "minor": "5"}},
            "family": "Debian", "hardware": "x86_64", "name": "Debian",
            "release": {"full": "12.5", "major": "12", "minor": "5"}, "selinux": {"enabled": False},
        },
        "partitions": partitions,
        "path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/puppetlabs/bin",
        "processors": {
            "count": cores, "extensions": ["x86_64", "x86_64-v1", "x86_64-v2", "x86_64-v3"],
            "isa": "unknown", "models": ["Intel(R) Xeon(R) Gold 6230R CPU @ 2.10GHz"] * cores,
            "physicalcount": 1, "speed": "2.10 GHz", "cores": cores, "threads": 1,
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
                     "sse sse2 ss syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl xtopology "
                     "cpuid tsc_known_freq pni pclmulqdq vmx ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
                     "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch",
        },
        "ruby": {"platform": "x86_64-linux", "sitedir": "/opt/puppetlabs/puppet/lib/ruby/site_ruby/3.2.0",
                 "version": "3.2.3"},
        "ssh": {
            "dsa": ssh_key(rng, ("ssh-dss", "2"), 580),
            "ecdsa": ssh_key(rng, ("ecdsa-sha2-nistp256", "3"), 180),
            "ed25519": ssh_key(rng, ("ssh-ed25519", "4"), 68),
            "rsa": ssh_key(rng, ("ssh-rsa", "1"), 540),
        },
        "system_uptime": {"days": "@@up_days@@", "hours": "@@up_hours@@", "seconds": "@@up_secs@@",
                          "uptime": "@@up_text@@"},
        "timezone": "UTC",
        "virtual": "kvm",
        # Custom facts a site adds (packages, roles); a new package version is a real change.
        "pkg_openssl_version": "3.0.@@pkg@@-1~deb12u1",
        "pkg_versions": {p: f"{rng.randrange(1, 9)}.{rng.randrange(20)}.{rng.randrange(50)}-{rng.randrange(1, 4)}"
                         for p in PACKAGES},
        "systemd_units": {f"{u}.service": ("active" if rng.random() < 0.9 else "inactive") for u in UNITS},
        "role": rng.choice(["web", "db", "cache", "worker", "proxy"]),
        "datacenter": rng.choice(["fra1", "ams2", "lon3"]),
        "ec2_metadata": {
            "ami-id": f"ami-{hexbytes(rng, 8)}", "ami-launch-index": "0", "ami-manifest-path": "(unknown)",
            "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
            "hostname": f"ip-{ip.replace('.', '-')}.eu-central-1.compute.internal",
            "instance-action": "none", "instance-id": f"i-{hexbytes(rng, 8)}", "instance-type": "m5.xlarge",
            "local-hostname": f"ip-{ip.replace('.', '-')}.eu-central-1.compute.internal", "local-ipv4": ip,
            "mac": interfaces["eth0"]["mac"], "placement": {"availability-zone": "eu-central-1a", "region": "eu-central-1"},
            "profile": "default-hvm", "reservation-id": f"r-{hexbytes(rng, 8)}",
            "security-groups": "default\nssh\nweb",
            "services": {"domain": "amazonaws.com", "partition": "aws"},
        },
        "puppet_classes": [f"profile::{c}" for c in ("base", "ssh", "ntp", "monitoring", "logging", "users",
                                                      "firewall", "backup", "motd", "sudo", "packages")],
    }
    # Legacy facts, as Puppet 7 agents still send them (Foreman's import reads several).
    facts.update({
        "architecture": "amd64", "domain": domain, "fqdn": certname, "hostname": short,
        "hardwaremodel": "x86_64", "ipaddress": ip, "macaddress": interfaces["eth0"]["mac"],
        "netmask": "255.255.255.0", "network": ip.rsplit(".", 1)[0] + ".0",
        "interfaces": ",".join(names), "operatingsystem": "Debian", "operatingsystemmajrelease": "12",
        "operatingsystemrelease": "12.5", "osfamily": "Debian", "lsbdistcodename": "bookworm",
        "lsbdistid": "Debian", "lsbdistrelease": "12.5", "memorysize": human(mem_total),
        "memorysize_mb": f"{mem_total / MIB:.2f}", "memoryfree": "@@mem_avail@@", "memoryfree_mb": "@@mem_avail_mb@@",
        "swapsize": human(swap_total), "swapfree": "@@swap_avail@@", "uptime": "@@up_text@@",
        "uptime_days": "@@up_days@@", "uptime_hours": "@@up_hours@@", "uptime_seconds": "@@up_secs@@",
        "processorcount": cores, "physicalprocessorcount": 1, "serialnumber": facts["dmi"]["product"]["serial_number"],
        "uuid": facts["dmi"]["product"]["uuid"], "virtual": "kvm",
    })
    for name, iface in interfaces.items():
        facts[f"ipaddress_{name}"] = iface["ip"]
        facts[f"netmask_{name}"] = iface["netmask"]
        facts[f"network_{name}"] = iface["network"]
        facts[f"mtu_{name}"] = iface["mtu"]
        if "mac" in iface:
            facts[f"macaddress_{name}"] = iface["mac"]
    return facts


# Mountpoints per host (8 of the system, the rest container overlays).
N_MOUNTS = 14
# Services a site fact reports.
UNITS = [f"{p}-{s}" for p in ("app", "sys", "net") for s in (
    "cron", "sshd", "rsyslog", "chronyd", "nginx", "postgresql", "docker", "containerd", "node-exporter",
    "filebeat", "puppet", "unattended-upgrades", "systemd-journald", "systemd-logind", "dbus", "polkit",
    "getty", "networking", "resolved", "timesyncd")]
# Site package facts (a custom fact listing installed versions).
PACKAGES = [f"{p}{s}" for p in ("lib", "python3-", "golang-", "node-", "perl-", "ruby-")
            for s in ("ssl3", "curl4", "xml2", "yaml", "ffi8", "zstd1", "lz4-1", "pcre2", "gnutls30",
                      "krb5-3", "ldap2", "sasl2", "sqlite3", "expat1", "bz2-1", "lzma5", "systemd0",
                      "udev1", "apt-pkg6", "gcrypt20", "gpg-error0", "idn2-0", "nghttp2", "psl5", "rtmp1")]


PLACEHOLDER = re.compile(r'("@@(\w+)@@"|@@(\w+)@@)')


class Template:
    """One host's body with its placeholders: split once, joined per upload."""

    def __init__(self, text):
        self.parts = []   # literal text and (name, quoted) slots, alternating
        pos = 0
        for m in PLACEHOLDER.finditer(text):
            self.parts.append(text[pos:m.start()])
            self.parts.append((m.group(2) or m.group(3), m.group(2) is not None))
            pos = m.end()
        self.parts.append(text[pos:])

    def render(self, values):
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                name, quoted = p
                v = values[name]
                out.append(json.dumps(v) if quoted else str(v))
        return "".join(out)


def volatile_values(rng, seq, host_rng_base, n_mounts=N_MOUNTS):
    """What changes in every upload: uptime, load, free memory and space."""
    up = host_rng_base + seq * 1800 + rng.randrange(60)
    v = {
        "up_secs": up, "up_days": up // 86400, "up_hours": up // 3600,
        "up_text": f"{up // 86400} days" if up >= 86400 else f"{up // 3600}:{up % 3600 // 60:02d} hours",
        "load1": round(rng.uniform(0, 4), 2), "load5": round(rng.uniform(0, 3), 2), "load15": round(rng.uniform(0, 2), 2),
    }
    for prefix, total in (("mem", 8 * GIB), ("swap", 2 * GIB)):
        used = rng.randrange(total // 10, total // 2)
        v[f"{prefix}_avail_mb"] = f"{(total - used) / MIB:.2f}"
        v.update({f"{prefix}_used_b": used, f"{prefix}_used": human(used), f"{prefix}_avail_b": total - used,
                  f"{prefix}_avail": human(total - used), f"{prefix}_cap": f"{100.0 * used / total:.2f}%"})
    for i in range(n_mounts):
        total = 50 * GIB
        used = rng.randrange(total // 10, total * 9 // 10)
        v.update({f"mp{i}_used_b": used, f"mp{i}_used": human(used), f"mp{i}_avail_b": total - used,
                  f"mp{i}_avail": human(total - used), f"mp{i}_cap": f"{100.0 * used / total:.2f}%"})
    return v


class Host:
    """A host's template and where its uploads stand."""

    def __init__(self, certname, state):
        self.certname = certname
        self.facts_template = Template(json.dumps(facts_for(certname), separators=(",", ":")))
        seed = int(hashlib.sha256(certname.encode()).hexdigest()[:8], 16)
        self.uptime_base = 86400 + seed % (200 * 86400)
        self.octet = seed % 250
        s = state.get(certname, {})
        self.seq = s.get("seq", 0)      # uploads so far
        self.gen = s.get("gen", 0)      # real (non-ENC) changes so far
        self.enc = s.get("enc", 0)      # interface address changes so far

    def state(self):
        return {"seq": self.seq, "gen": self.gen, "enc": self.enc}

    def body(self, rng, change):
        """The next upload's facts (JSON text); CHANGE: None, 'stable' or 'enc'."""
        self.seq += 1
        if change == "stable":
            self.gen += 1
        elif change == "enc":
            self.enc += 1
        values = volatile_values(rng, self.seq, self.uptime_base)
        # Odd changes move a package version, even ones resize /data.
        data = (100 + (self.gen + 1) // 2) * GIB
        values.update({"pkg": self.gen // 2, "data_size": data, "data_size_h": human(data),
                       "ip2": f"10.200.{self.octet}.{2 + self.enc % 250}"})
        return self.facts_template.render(values)


# ---------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------
OUTCOME = re.compile(rb'"outcome":"(\w+)"')
FOREMAN = re.compile(rb'"foreman":"(\w+)"')


class Conn:
    """One HTTP/1.1 keep-alive connection."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def post(self, host_header, path, body, foreman_api):
        extra = "Accept: application/json,version=2\r\n" if foreman_api else ""
        self.writer.write(
            (f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n{extra}"
             f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        answer = await self.reader.readexactly(length) if length else b""
        return status, answer


class Pool:
    """Idle connections are reused, the most recent first; a new one is
    opened when none is idle. One idle for longer than IDLE_MAX is closed
    instead: the bridge (actix's 5 s keep-alive) may be closing it just as
    an upload is written to it, and that upload would fail for the client's
    sake, not the server's."""

    IDLE_MAX = 3.0

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle = []   # (conn, idle since), the newest last
        self.opened = 0
        self.expired = 0

    async def take(self):
        now = time.monotonic()
        if self.idle and now - self.idle[-1][1] > self.IDLE_MAX:
            # The newest is too old: so are all the others.
            self.expired += len(self.idle)
            self.close()
            self.idle = []
        if self.idle:
            return self.idle.pop()[0]
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return Conn(reader, writer)

    def give(self, conn):
        self.idle.append((conn, time.monotonic()))

    def close(self):
        for conn, _ in self.idle:
            conn.writer.close()


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def summary(values_s):
    values = sorted(v * 1000.0 for v in values_s)
    out = {f"p{p}": percentile(values, p) for p in (50, 90, 99, 99.9)}
    out["max"] = values[-1] if values else None
    out["mean"] = sum(values) / len(values) if values else None
    return out


class Uploads:
    """The sequence of uploads: hosts in a fixed shuffled round robin, each
    upload a real change with --change-share, of those an ENC change with
    --enc-share, sent to Foreman's API with --foreman-share."""

    def __init__(self, args, hosts):
        self.args, self.hosts = args, hosts
        self.rng = random.Random(args.seed)
        self.order = list(range(len(hosts)))
        if not args.warmup:
            self.rng.shuffle(self.order)
        self.i = 0
        self.sent = {"new": 0, "stable": 0, "enc": 0, "none": 0, "foreman_api": 0}

    def next(self):
        host = self.hosts[self.order[self.i % len(self.order)]]
        self.i += 1
        rng = self.rng
        if host.seq == 0:
            change, kind = None, "new"
        elif rng.random() < self.args.change_share:
            change = "enc" if rng.random() < self.args.enc_share else "stable"
            kind = change
        else:
            change, kind = None, "none"
        self.sent[kind] += 1
        facts = host.body(rng, change)
        if rng.random() < self.args.foreman_share:
            self.sent["foreman_api"] += 1
            body = (f'{{"facts":{facts},"name":"{host.certname}","certname":"{host.certname}"}}').encode()
            return "/api/v2/hosts/facts", body, True
        return f"/facts/{host.certname}", facts.encode(), False


async def drive(args, hosts):
    pool = Pool(args.host, args.port)
    host_header = f"{args.host}:{args.port}"
    uploads = Uploads(args, hosts)
    latencies, service = [], []
    statuses, outcomes, foreman = {}, {}, {}
    errors = []
    body_bytes = 0
    max_lag = 0.0
    loop = asyncio.get_running_loop()

    async def one(path, body, foreman_api, intended):
        nonlocal max_lag, body_bytes
        sent = loop.time()
        max_lag = max(max_lag, sent - intended)
        try:
            conn = await pool.take()
            status, answer = await conn.post(host_header, path, body, foreman_api)
            pool.give(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            errors.append(f"{path}: {e!r}")
            return
        done = loop.time()
        latencies.append(done - intended)
        service.append(done - sent)
        body_bytes += len(body)
        statuses[status] = statuses.get(status, 0) + 1
        m = OUTCOME.search(answer)
        key = m.group(1).decode() if m else ("spooled" if b'"spooled":true' in answer else f"http_{status}")
        outcomes[key] = outcomes.get(key, 0) + 1
        m = FOREMAN.search(answer)
        if m:
            f = m.group(1).decode()
            foreman[f] = foreman.get(f, 0) + 1

    cpu0 = time.process_time()
    started = loop.time()
    if args.rate:
        tasks = []
        interval = 1.0 / args.rate
        n = int(args.rate * args.duration)
        for i in range(n):
            intended = started + i * interval
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            path, body, api = uploads.next()
            tasks.append(asyncio.ensure_future(one(path, body, api, intended)))
        await asyncio.gather(*tasks)
    else:
        total = len(hosts) if args.warmup else None
        deadline = started + (args.duration or 1e12)

        async def worker():
            while loop.time() < deadline and (total is None or uploads.i < total):
                path, body, api = uploads.next()
                await one(path, body, api, loop.time())

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = loop.time() - started
    pool.close()
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    if args.rate:
        mode = f"open loop {args.rate:g} uploads/s for {args.duration:g} s"
    elif args.warmup:
        mode = f"warm-up: every host once, {args.concurrency} connections"
    else:
        mode = f"closed loop, {args.concurrency} connections, {args.duration:g} s"
    return {
        "mode": mode,
        "started": time.time() - elapsed,
        "requests": uploads.i,
        "answered": len(latencies),
        "accepted_2xx": ok,
        "errors": len(errors),
        "first_errors": errors[:5],
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "outcomes": dict(sorted(outcomes.items())),
        "foreman": dict(sorted(foreman.items())),
        "sent": uploads.sent,
        "body_bytes_mean": body_bytes / len(latencies) if latencies else None,
        "elapsed_s": elapsed,
        "accepted_per_s": ok / elapsed if elapsed else None,
        "connections_opened": pool.opened,
        "connections_expired": pool.expired,
        "max_schedule_lag_ms": max_lag * 1000.0,
        "latency_ms": summary(latencies),
        "service_time_ms": summary(service),
        "driver_cpu_s": time.process_time() - cpu0,
    }


def cmd_run(args):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(args.hosts) as f:
        names = [line.strip() for line in f if line.strip()]
    state = {}
    if os.path.exists(args.state):
        with open(args.state) as f:
            state = json.load(f)
    t = time.process_time()
    hosts = [Host(n, state) for n in names]
    build_s = time.process_time() - t
    result = asyncio.run(drive(args, hosts))
    result["templates_build_cpu_s"] = build_s
    with open(args.state + ".tmp", "w") as f:
        json.dump({h.certname: h.state() for h in hosts}, f)
    os.replace(args.state + ".tmp", args.state)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 1 if result["errors"] else 0


def cmd_sample(args):
    host = Host(args.certname, {})
    print(host.body(random.Random(1), None))


def cmd_sample_loop(args):
    """Every second until killed: the outbox and the audit queue on the
    primary (exact, not the bridge's 5 s gauge), the bridge's gauges, the
    stand-in's counts. One JSON line each."""
    sql = ("SELECT (SELECT count(*) FROM pvc.outbox WHERE NOT dead), "
           "(SELECT coalesce(extract(epoch FROM clock_timestamp() - min(first_enqueued)), 0) FROM pvc.outbox "
           "WHERE NOT dead), (SELECT count(*) FROM pvc.audit_queue), "
           "(SELECT coalesce(extract(epoch FROM clock_timestamp() - min(e.at)), 0) FROM pvc.audit_queue q "
           "JOIN pvc.audit_events e ON e.id = q.event_id)")
    gauges = ("pvc_bridge_outbox_items", "pvc_bridge_outbox_oldest_seconds")
    with open(args.out, "a") as out:
        while True:
            t = time.time()
            line = {"t": t}
            try:
                row = subprocess.run([args.psql, args.db, "-X", "-A", "-t", "-F", " ", "-c", sql],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                line.update(outbox=int(row[0]), outbox_oldest_s=float(row[1]), audit_queue=int(row[2]),
                            audit_oldest_s=float(row[3]))
            except (subprocess.SubprocessError, IndexError, ValueError):
                pass
            try:
                with urllib.request.urlopen(f"{args.bridge}/metrics", timeout=2) as r:
                    for raw in r.read().decode().splitlines():
                        name, _, value = raw.partition(" ")
                        if name in gauges:
                            line[name] = float(value)
            except OSError:
                pass
            try:
                with urllib.request.urlopen(f"{args.standin}/counts?brief=1", timeout=2) as r:
                    line["standin"] = json.load(r)["paths"]
            except OSError:
                pass
            out.write(json.dumps(line) + "\n")
            out.flush()
            time.sleep(max(0.0, 1.0 - (time.time() - t)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("certname")
    r = sub.add_parser("run")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--hosts", required=True, help="file: one certname per line")
    r.add_argument("--state", required=True, help="file: each host's counters, read and rewritten")
    r.add_argument("--duration", type=float, default=0.0, help="seconds (closed and open loop)")
    r.add_argument("--change-share", type=float, default=0.10)
    r.add_argument("--enc-share", type=float, default=0.10, help="of the changes: an interface address")
    r.add_argument("--foreman-share", type=float, default=0.20, help="uploads to /api/v2/hosts/facts")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--concurrency", type=int, default=16)
    mode = r.add_mutually_exclusive_group(required=True)
    mode.add_argument("--warmup", action="store_true")
    mode.add_argument("--closed", action="store_true", help="closed loop (--concurrency, --duration)")
    mode.add_argument("--rate", type=float, help="open loop at this many uploads per second")
    sl = sub.add_parser("sample-loop")
    sl.add_argument("--out", required=True)
    sl.add_argument("--psql", required=True)
    sl.add_argument("--db", required=True)
    sl.add_argument("--bridge", required=True)
    sl.add_argument("--standin", required=True)
    args = parser.parse_args()
    if args.cmd == "sample":
        return cmd_sample(args)
    if args.cmd == "sample-loop":
        return cmd_sample_loop(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main() or 0)
