#!/usr/bin/env python3
"""Renders the pvc-bridge chart and checks what matters to operators.

For the default values, the HA/TLS/HPA values (helm/pvc-bridge/ci/), and
HTTPS from a Secret the chart creates out of PEM values given with
--set-file:

- `helm lint --strict` passes and `helm template` renders;
- every rendered object validates against the Kubernetes API schemas
  (kubernetes-validate, offline, strict);
- the probes point at the bridge's real endpoints (/healthz, /readyz, routed
  in bridge/src/http/mod.rs) on the container's port, which is the port of
  the configured `listen`, with HTTPS exactly when [tls] is configured; and
  the bridge, started with the pod's configuration, answers them without a
  client certificate (as the kubelet asks);
- the rendered bridge.toml loads with the bridge's own parser: the real
  binary's `check-config`, with the environment and files the pod gets
  (Secrets resolved from the rendered ones or dummy existing ones, a
  throwaway certificate, CA and CRL), says "configuration OK"; the migrate
  Job's configuration is accepted by `pvc-bridge migrate` (it fails
  connecting, not validating);
- no credential is inlined: the dummy credentials given with --set (and
  those of existing Secrets) appear in no object but Secrets, and the chart
  refuses database URLs and passwords put into `config`;
- hook ordering: the migrate Job is a pre-install/pre-upgrade hook, and
  every ConfigMap and Secret it reads is an existing Secret or a hook of the
  same events with a lower weight;
- the spool directory (and the audit repository) are on volumes from the
  StatefulSet's volumeClaimTemplates; the root filesystem is read-only and
  the only writable mounts are those volumes and /tmp.

And every value of values.yaml is documented in the chart's README.

Prints one summary line ("N passed, N failed") and exits non-zero on any
failure.
"""

import argparse
import base64
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import kubernetes_validate
import yaml

# The chart's kubeVersion floor and the newest schemas kubernetes-validate
# ships.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
RELEASE = "ci"
NAMESPACE = "pvc"


@dataclass
class Scenario:
    name: str
    values_file: str
    # --set-string values (credentials given to the chart).
    sets: dict
    # Secrets that exist before the release: name -> key -> value.
    existing: dict = field(default_factory=dict)
    # --set-file values: key -> (file, content); private keys among them
    # are credentials too.
    files: dict = field(default_factory=dict)

    def credentials(self):
        """Every dummy credential of the scenario, as strings that must not
        appear outside Secrets (a PEM key: each line of its body)."""
        found = [unescape(v) for k, v in self.sets.items() if k.startswith("secrets.")]
        found += [content for key, (_, content) in self.files.items() if key == "tls.key"]
        for data in self.existing.values():
            for key, value in data.items():
                if not key.endswith((".crt", ".pem")):
                    found.append(value)
        parts = []
        for value in found:
            if "-----BEGIN" in value:
                parts += [line for line in value.splitlines() if len(line) >= 32 and "-----" not in line]
            else:
                parts += value.split(",")
        return parts


class Checks:
    def __init__(self, verbose=False):
        self.verbose = verbose
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}", file=sys.stderr)
        return ok


def dummy(prefix):
    return f"{prefix}-{secrets.token_hex(8)}"


def make_pki(workdir):
    """A throwaway CA, a server certificate for localhost from it, and an
    empty CRL of the CA (as the Puppet CA would provide)."""
    d = os.path.join(workdir, "pki")
    os.makedirs(d)

    def run(*args):
        subprocess.run(
            ["openssl", *args], cwd=d, check=True, capture_output=True, text=True
        )

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=Puppet CA: ci", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=pvc-bridge.pvc.svc")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:pvc-bridge.pvc.svc,DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "tls.crt")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = ci\n[ci]\ndatabase = index.txt\n"
                "crlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n")
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "crlnumber"), "w") as f:
        f.write("01\n")
    run("ca", "-gencrl", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt",
        "-out", "crl.pem")
    pem = {}
    for name in ("ca.crt", "tls.crt", "tls.key", "crl.pem"):
        with open(os.path.join(d, name)) as f:
            pem[name] = f.read()
    return pem, d


def scenarios(pki):
    def db():
        # Port 1: nothing listens, so the bridge fails fast connecting.
        return f"postgres://pvc_bridge:{dummy('dbpw')}@127.0.0.1:1/foreman"

    default = Scenario(
        name="default",
        values_file="ci/default-values.yaml",
        sets={
            "secrets.databasePrimary.value": db(),
            # Two replicas: the comma is escaped for --set.
            "secrets.databaseReplicas.value": db() + "\\," + db(),
            "secrets.foremanPassword.value": dummy("foremanpw"),
            "secrets.adminToken.value": dummy("admintoken"),
            "secrets.serverToken.value": dummy("servertoken"),
            "secrets.encRootPass.value": "$6$" + dummy("salt") + "$" + dummy("hash"),
        },
    )
    ha = Scenario(
        name="ha-tls-hpa",
        values_file="ci/ha-tls-hpa-values.yaml",
        sets={
            "secrets.foremanPassword.value": dummy("foremanpw"),
            "secrets.adminToken.value": dummy("admintoken"),
            "secrets.serverToken.value": dummy("servertoken"),
        },
        existing={
            "foreman-db": {"primary-url": db(), "replica-urls": db() + "," + db()},
            "pvc-bridge-puppet-tls": {k: v for k, v in pki.items() if k != "dir"},
        },
    )
    # HTTPS from a Secret the chart creates out of PEM values, with the
    # Puppet CA and no CRL.
    chart_tls = Scenario(
        name="chart-tls",
        values_file="ci/default-values.yaml",
        sets={
            "secrets.databasePrimary.value": db(),
            "secrets.adminToken.value": dummy("admintoken"),
            "tls.enabled": "true",
            "tls.foremanClientCert": "true",
        },
        files={name: (path, pki[value]) for name, value, path in (
            ("tls.cert", "tls.crt", pki["dir"] + "/tls.crt"),
            ("tls.key", "tls.key", pki["dir"] + "/tls.key"),
            ("tls.clientCA", "ca.crt", pki["dir"] + "/ca.crt"),
        )},
    )
    return [default, ha, chart_tls]


def helm_args(scenario):
    args = ["-f", scenario.values_file]
    for key, value in scenario.sets.items():
        if value in ("true", "false"):
            args += ["--set", f"{key}={value}"]
        else:
            args += ["--set-string", f"{key}={value}"]
    for key, (path, _) in scenario.files.items():
        args += ["--set-file", f"{key}={path}"]
    return args


def unescape(value):
    return value.replace("\\,", ",")


def hook_events(obj):
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    hook = ann.get("helm.sh/hook")
    if not hook:
        return None, None
    return {h.strip() for h in hook.split(",")}, int(ann.get("helm.sh/hook-weight", "0"))


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    return None


def secret_data(docs, scenario, name):
    """key -> value of a Secret the pod would read: rendered, or existing."""
    rendered = find(docs, "Secret", name)
    if rendered is not None:
        data = {k: base64.b64decode(v).decode() for k, v in (rendered.get("data") or {}).items()}
        data.update(rendered.get("stringData") or {})
        return data
    if name in scenario.existing:
        return scenario.existing[name]
    raise LookupError(f"Secret {name!r} is neither rendered nor an existing one")


def configmap_data(docs, name):
    rendered = find(docs, "ConfigMap", name)
    if rendered is None:
        raise LookupError(f"ConfigMap {name!r} is not rendered")
    return rendered.get("data") or {}


def materialize(docs, scenario, pod_spec, container, root, claims=()):
    """Writes the files the container's mounts show under `root` and returns
    (env, mounts): the environment it gets and {mountPath: volume kind}."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts = {}
    for mount in container.get("volumeMounts") or []:
        path = mount["mountPath"]
        target = root + path
        os.makedirs(target, exist_ok=True)
        if mount["name"] in claims:
            mounts[path] = "claim"
            continue
        volume = volumes.get(mount["name"])
        if volume is not None and "persistentVolumeClaim" in volume:
            mounts[path] = "claim"
            continue
        if volume is None:
            raise LookupError(f"volumeMount {mount['name']!r} has no volume or claim template")
        files = {}
        if "configMap" in volume:
            data = configmap_data(docs, volume["configMap"]["name"])
            files = pick(data, volume["configMap"].get("items"))
            mounts[path] = "configMap"
        elif "secret" in volume:
            data = secret_data(docs, scenario, volume["secret"]["secretName"])
            files = pick(data, volume["secret"].get("items"))
            mounts[path] = "secret"
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                if "secret" in source:
                    data = secret_data(docs, scenario, source["secret"]["name"])
                elif "configMap" in source:
                    data = configmap_data(docs, source["configMap"]["name"])
                else:
                    continue
                files.update(pick(data, list(source.values())[0].get("items")))
            mounts[path] = "projected"
        elif "emptyDir" in volume:
            mounts[path] = "emptyDir"
        else:
            mounts[path] = "other"
        for rel, content in files.items():
            with open(os.path.join(target, rel), "w") as f:
                f.write(content)
    env = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            ref = var["valueFrom"].get("secretKeyRef")
            if ref is None:
                raise LookupError(f"env {var['name']}: only values and secretKeyRef are expected")
            data = secret_data(docs, scenario, ref["name"])
            if ref["key"] not in data:
                raise LookupError(f"env {var['name']}: Secret {ref['name']!r} has no key {ref['key']!r}")
            env[var["name"]] = data[ref["key"]]
    return env, mounts


def pick(data, items):
    if not items:
        return dict(data)
    out = {}
    for item in items:
        if item["key"] not in data:
            raise LookupError(f"no key {item['key']!r} to mount as {item['path']}")
        out[item["path"]] = data[item["key"]]
    return out


def remap(text, mounts, root):
    """Points the absolute paths under the pod's mounts at `root`."""
    paths = sorted(mounts, key=len, reverse=True)
    pattern = re.compile('"(' + "|".join(re.escape(p) for p in paths) + ')(?=[/"])')
    return pattern.sub(lambda m: '"' + root + m.group(1), text)


def under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def mount_of(path, mounts):
    best = None
    for m in mounts:
        if under(path, m) and (best is None or len(m) > len(best)):
            best = m
    return best


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def run_scenario(c, args, scenario, workdir):
    name = scenario.name
    helm = [args.helm]
    lint = subprocess.run(helm + ["lint", "--strict", args.chart] + helm_args(scenario),
                          cwd=args.chart, capture_output=True, text=True)
    c.check(f"{name}: helm lint --strict", lint.returncode == 0, lint.stdout + lint.stderr)
    tpl = subprocess.run(helm + ["template", RELEASE, args.chart, "--namespace", NAMESPACE]
                         + helm_args(scenario), cwd=args.chart, capture_output=True, text=True)
    if not c.check(f"{name}: helm template", tpl.returncode == 0, tpl.stderr):
        return
    rendered = tpl.stdout
    with open(os.path.join(workdir, f"{name}.yaml"), "w") as f:
        f.write(rendered)
    docs = [d for d in yaml.safe_load_all(rendered) if d]

    # Schemas.
    for doc in docs:
        what = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            # A CRD: not in the Kubernetes schemas. Its selector must find
            # the headless Service, its port must be that Service's.
            headless = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
            sel = doc["spec"]["selector"]["matchLabels"]
            matches = [s for s in by_kind(docs, "Service")
                       if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
            ports = {p["name"] for s in headless for p in s["spec"]["ports"]}
            c.check(f"{name}: {what} selects the headless Service only",
                    matches == headless and len(headless) == 1, f"selects {[m['metadata']['name'] for m in matches]}")
            c.check(f"{name}: {what} scrapes /metrics on the Service's port",
                    all(e.get("path") == "/metrics" and e.get("port") in ports for e in doc["spec"]["endpoints"]),
                    str(doc["spec"]["endpoints"]))
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                c.check(f"{name}: {what} valid for Kubernetes {version}", True)
            except kubernetes_validate.ValidationError as e:
                c.check(f"{name}: {what} valid for Kubernetes {version}", False,
                        f"{e.message} at {'/'.join(str(p) for p in e.path)}")
            except kubernetes_validate.SchemaNotFoundError:
                c.check(f"{name}: {what} valid for Kubernetes {version}", False, "no schema for it")

    # No credential outside Secrets.
    dumps = {f"{d['kind']}/{d['metadata']['name']}": yaml.safe_dump(d, width=1 << 20)
             for d in docs if d.get("kind") != "Secret"}
    for part in scenario.credentials():
        encoded = base64.b64encode(part.encode()).decode()
        leaks = [what for what, text in dumps.items() if part in text or encoded in text]
        c.check(f"{name}: credential {part[:12]}… only in Secrets", not leaks, f"found in {leaks}")
    # What was given is what the chart's Secrets hold (and so what the pod reads).
    held = set()
    for doc in by_kind(docs, "Secret"):
        held.update(base64.b64decode(v).decode() for v in (doc.get("data") or {}).values())
    for key, value in scenario.sets.items():
        if key.startswith("secrets."):
            c.check(f"{name}: {key} is held by a chart-created Secret", unescape(value) in held)
    for key, (_, content) in scenario.files.items():
        c.check(f"{name}: {key} is held by a chart-created Secret", content in held)

    sts = by_kind(docs, "StatefulSet")
    if not c.check(f"{name}: one StatefulSet", len(sts) == 1, str(len(sts))):
        return
    sts = sts[0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}

    # Replicas, spreading, disruption.
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    replicas = hpa[0]["spec"]["minReplicas"] if hpa else spec.get("replicas", 1)
    c.check(f"{name}: at least 2 replicas", replicas >= 2, str(replicas))
    if hpa:
        ref = hpa[0]["spec"]["scaleTargetRef"]
        c.check(f"{name}: HPA scales the StatefulSet",
                ref["kind"] == "StatefulSet" and ref["name"] == sts["metadata"]["name"], str(ref))
        c.check(f"{name}: HPA leaves replicas to itself", "replicas" not in spec)
    c.check(f"{name}: rolling updates", spec["updateStrategy"]["type"] == "RollingUpdate")
    labels = spec["template"]["metadata"]["labels"]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    c.check(f"{name}: a PodDisruptionBudget selects the pods",
            len(pdbs) == 1 and all(labels.get(k) == v for k, v in pdbs[0]["spec"]["selector"]["matchLabels"].items()))
    c.check(f"{name}: pod anti-affinity and topology spread",
            "podAntiAffinity" in (pod.get("affinity") or {}) and pod.get("topologySpreadConstraints"))

    # Security context.
    psc, csc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    c.check(f"{name}: runs as non-root", psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True)
    c.check(f"{name}: read-only root filesystem", csc.get("readOnlyRootFilesystem") is True)
    c.check(f"{name}: no privilege escalation", csc.get("allowPrivilegeEscalation") is False)

    # The configuration file the container is given.
    cargs = container.get("args") or []
    c.check(f"{name}: the container serves", cargs[:1] == ["serve"], str(cargs))
    config_path = cargs[cargs.index("--config") + 1] if "--config" in cargs else None
    if not c.check(f"{name}: --config names a file", config_path is not None, str(cargs)):
        return

    root = os.path.join(workdir, f"{name}-pod")
    try:
        env, mounts = materialize(docs, scenario, pod, container, root, claims)
    except LookupError as e:
        c.check(f"{name}: the pod's files and environment resolve", False, str(e))
        return
    c.check(f"{name}: the pod's files and environment resolve", True)
    cfg_mount = mount_of(config_path, mounts)
    if not c.check(f"{name}: the configuration file is mounted from a ConfigMap",
                   cfg_mount is not None and mounts[cfg_mount] == "configMap", str(config_path)):
        return
    with open(root + config_path) as f:
        toml_text = f.read()
    try:
        config = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        c.check(f"{name}: bridge.toml is TOML", False, str(e))
        return

    # Writable mounts and persistent volumes.
    writable = [m["mountPath"] for m in container.get("volumeMounts") or [] if not m.get("readOnly")]
    for path in writable:
        c.check(f"{name}: writable mount {path} is a persistent volume or /tmp",
                mounts[path] == "claim" or (path == "/tmp" and mounts[path] == "emptyDir"), mounts[path])
    spool = (config.get("writes") or {}).get("spool_dir")
    spool_mount = mount_of(spool, mounts) if spool else None
    spool_volume = next((m["name"] for m in container.get("volumeMounts") or []
                         if m["mountPath"] == spool_mount), None)
    # Each process its own spool: a claim template, never a shared claim.
    c.check(f"{name}: writes.spool_dir is on the pod's own volumeClaimTemplate",
            spool_volume in claims,
            f"spool_dir={spool!r} mount={spool_mount!r}")
    repo = (config.get("audit") or {}).get("repo")
    if repo:
        repo_mount = mount_of(repo, mounts)
        c.check(f"{name}: audit.repo is on a persistent volume",
                repo_mount is not None and mounts[repo_mount] == "claim" and repo != repo_mount,
                f"repo={repo!r} mount={repo_mount!r}")

    # Probes.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    listen_port = int(config["listen"].rsplit(":", 1)[1])
    tls = "tls" in config
    scheme = "HTTPS" if tls else "HTTP"
    with open(os.path.join(args.repo, "bridge/src/http/mod.rs")) as f:
        routes = set(re.findall(r'\.route\("(/[a-z]+)"', f.read()))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get_ = (container.get(probe) or {}).get("httpGet") or {}
        port = get_.get("port")
        number = ports.get(port, port)
        c.check(f"{name}: {probe} is GET {path}", get_.get("path") == path and path in routes,
                f"path={get_.get('path')!r}, routes={sorted(routes)}")
        c.check(f"{name}: {probe} port is the container's and listen's", number == listen_port
                and number in ports.values(), f"probe {port!r}={number}, listen {listen_port}, ports {ports}")
        c.check(f"{name}: {probe} scheme {scheme}", get_.get("scheme", "HTTP") == scheme, str(get_.get("scheme")))
    for svc in by_kind(docs, "Service"):
        for p in svc["spec"]["ports"]:
            target = ports.get(p["targetPort"], p["targetPort"])
            c.check(f"{name}: Service {svc['metadata']['name']} targets listen's port",
                    target == listen_port, f"{p['targetPort']!r}")

    # The bridge's own parser, with the pod's environment and files.
    local_config = os.path.join(workdir, f"{name}-bridge.toml")
    with open(local_config, "w") as f:
        f.write(remap(toml_text, mounts, root))
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    run_env["HOME"] = root + "/tmp"
    run_env = {k: (remap(f'"{v}"', mounts, root)[1:-1] if v.startswith("/") else v) for k, v in run_env.items()}
    check = subprocess.run([args.bridge, "check-config", "--config", local_config],
                           env=run_env, capture_output=True, text=True, timeout=60)
    c.check(f"{name}: pvc-bridge check-config accepts bridge.toml",
            check.returncode == 0 and "configuration OK" in check.stdout,
            f"exit {check.returncode}: {check.stdout}{check.stderr}")

    # The probes answered by the bridge itself, anonymously, as the kubelet
    # asks. Listening on a free loopback port (the pod's port may be taken
    # here); the database is unreachable, so /readyz must say 503.
    port = free_port()
    serve_env = dict(run_env, PVC_LISTEN=f"127.0.0.1:{port}", PVC_FOREMAN__URL="")
    log_path = os.path.join(workdir, f"{name}-serve.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([args.bridge, "serve", "--config", local_config],
                                env=serve_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"{scheme.lower()}://127.0.0.1:{port}"
        health = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = get(base + "/healthz")
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        c.check(f"{name}: the bridge answers the liveness probe ({base}/healthz)",
                health is not None and health[0] == 200, f"{health}; log: {log_path}")
        ready = get(base + "/readyz") if health else None
        c.check(f"{name}: the readiness probe reflects the database ({base}/readyz, no database: 503)",
                ready is not None and ready[0] == 503, f"{ready}; log: {log_path}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # The migrate hook.
    jobs = [j for j in by_kind(docs, "Job")
            if (j["spec"]["template"]["spec"]["containers"][0].get("args") or [])[:1] == ["migrate"]]
    if not c.check(f"{name}: a migrate Job", len(jobs) == 1, str(len(jobs))):
        return
    job = jobs[0]
    events, weight = hook_events(job)
    c.check(f"{name}: migrate is a pre-install and pre-upgrade hook",
            events is not None and {"pre-install", "pre-upgrade"} <= events, str(events))
    jpod = job["spec"]["template"]["spec"]
    jcontainer = jpod["containers"][0]
    refs = set()
    for var in jcontainer.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            refs.add(("Secret", ref["name"]))
    for vol in jpod.get("volumes") or []:
        if "configMap" in vol:
            refs.add(("ConfigMap", vol["configMap"]["name"]))
        if "secret" in vol:
            refs.add(("Secret", vol["secret"]["secretName"]))
        for src in (vol.get("projected") or {}).get("sources") or []:
            for kind in ("secret", "configMap"):
                if kind in src:
                    refs.add(("Secret" if kind == "secret" else "ConfigMap", src[kind]["name"]))
    for kind, ref_name in sorted(refs):
        obj = find(docs, kind, ref_name)
        if obj is None:
            c.check(f"{name}: migrate reads {kind} {ref_name}, an existing one",
                    kind == "Secret" and ref_name in scenario.existing, "not rendered and not existing")
            continue
        oevents, oweight = hook_events(obj)
        c.check(f"{name}: {kind} {ref_name} exists before the migrate Job",
                oevents is not None and events is not None and events <= oevents and oweight < weight,
                f"hook {oevents} weight {oweight}, Job weight {weight}")
    jroot = os.path.join(workdir, f"{name}-migrate")
    try:
        jenv, jmounts = materialize(docs, scenario, jpod, jcontainer, jroot)
    except LookupError as e:
        c.check(f"{name}: the migrate Job's files and environment resolve", False, str(e))
        return
    jargs = jcontainer["args"]
    jconfig = jargs[jargs.index("--config") + 1]
    with open(jroot + jconfig) as f:
        jtext = f.read()
    local_jconfig = os.path.join(workdir, f"{name}-migrate.toml")
    with open(local_jconfig, "w") as f:
        f.write(remap(jtext, jmounts, jroot))
    jenv = dict(jenv, PATH=run_env["PATH"], HOME=jroot + "/tmp", PVC_DATABASE__CONNECT_TIMEOUT_SECS="2")
    migrate = subprocess.run([args.bridge, *jargs[:-1], local_jconfig], env=jenv,
                             capture_output=True, text=True, timeout=60)
    # Exit 64 is a configuration error; 1 is the unreachable database.
    c.check(f"{name}: pvc-bridge migrate accepts the Job's configuration",
            migrate.returncode == 1 and "invalid configuration" not in migrate.stderr,
            f"exit {migrate.returncode}: {migrate.stderr.strip()}")


def leaves(values, prefix=""):
    """Dotted paths of the chart's values, down to the documented level:
    maps of settings passed through whole (resources, security contexts,
    probes' timing, the bridge's config) count as one value."""
    whole = {"config", "resources", "podSecurityContext", "securityContext", "updateStrategy",
             "persistentVolumeClaimRetentionPolicy", "livenessProbe", "readinessProbe"}
    for key, value in values.items():
        path = prefix + key
        if isinstance(value, dict) and value and key not in whole:
            yield from leaves(value, path + ".")
        else:
            yield path


def check_readme(c, args):
    with open(os.path.join(args.chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    with open(os.path.join(args.chart, "README.md")) as f:
        documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", f.read(), re.M))
    missing = [p for p in leaves(values) if p not in documented]
    c.check("every value is documented in the chart's README", not missing, f"missing: {missing}")
    unknown = sorted(documented - set(leaves(values)))
    c.check("the README documents no value the chart lacks", not unknown, f"unknown: {unknown}")


def check_refusals(c, args):
    """Credentials put into `config` (which becomes the ConfigMap) are refused."""
    base = [args.helm, "template", RELEASE, args.chart, "-f", "ci/default-values.yaml"]
    for key in ("config.database.primary", "config.database.replicas", "config.foreman.password",
                "config.enc.root_pass"):
        value = dummy("inline")
        r = subprocess.run(base + ["--set-string", f"{key}={value}"], cwd=args.chart,
                           capture_output=True, text=True)
        c.check(f"the chart refuses {key}", r.returncode != 0 and "secrets." in r.stderr
                and value not in r.stdout, f"exit {r.returncode}: {r.stderr.strip()[:200]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--helm", required=True)
    p.add_argument("--bridge", required=True, help="the pvc-bridge binary")
    p.add_argument("--repo", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--verbose", "-v", action="store_true", help="name every check that passed too")
    args = p.parse_args()
    for name in ("helm", "bridge", "repo", "workdir"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    args.chart = os.path.join(args.repo, "helm/pvc-bridge")
    c = Checks(args.verbose)
    check_readme(c, args)
    check_refusals(c, args)
    pem, pki_dir = make_pki(args.workdir)
    pki = dict(pem, dir=pki_dir)
    for scenario in scenarios(pki):
        try:
            run_scenario(c, args, scenario, args.workdir)
        except Exception as e:  # a bug here must fail, not pass
            c.check(f"{scenario.name}: ran to the end", False, f"{type(e).__name__}: {e}")
    print(f"helm: {c.passed} passed, {c.failed} failed")
    return 1 if c.failed or not c.passed else 0


if __name__ == "__main__":
    sys.exit(main())
