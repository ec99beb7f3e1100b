"""What a schema cannot see in the Kubernetes manifests: that they fit together and fit
the gateway. Run by deploy/check.sh on deploy/kubernetes as rendered (`kubectl kustomize`,
or this file's `render` where kubectl is missing).

    python3 deploy/check_deploy.py RENDERED.yaml
    python3 deploy/check_deploy.py render DIR
    python3 deploy/check_deploy.py compare KUSTOMIZE.yaml FALLBACK.yaml

`render` is deploy/check.sh's fallback for machines without kubectl (kustomize v5 comes
with no package CI can install): it renders the kustomizations of this repository, and
refuses any kustomization field or object kind it does not implement. `compare` checks
it against the real kustomize where kubectl is present.

Each problem is printed on one line (`compare` adds a diff); exit 1 when there is any, 0 otherwise.
"""

import base64
import difflib
import hashlib
import json
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Objects the operator creates (deploy/README.md says how); everything else the
# Deployment names must be in the rendered output.
OPERATOR_SECRETS = {"hpki-gateway-tls", "hpki-gateway-keys", "hpki-gateway-db"}
OPERATOR_CONFIGMAPS = {"hpki-trust-org-anchors", "hpki-trust-org-intermediates"}
# Trust profile directories that certs/hpki/kustomization.yaml turns into ConfigMaps.
TRUST_CONFIGMAPS = {
    "hpki-trust-auth-anchors": ROOT / "certs/hpki/hpki-auth/anchors",
    "hpki-trust-auth-intermediates": ROOT / "certs/hpki/hpki-auth/intermediates",
}

problems = []


def problem(text):
    problems.append(text)


def duration_seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def under(path, mounts):
    """The mount whose path contains `path`, or None."""
    best = None
    for m in mounts:
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"]):
                best = m
    return best


def main(rendered_path):
    docs = [d for d in yaml.safe_load_all(open(rendered_path)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}

    if "Ingress" in by_kind:
        problem("an Ingress is rendered: TLS must pass through to the gateway (L4 only)")

    deployments = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "hpki-gateway"]
    if len(deployments) != 1:
        problem(f"expected one Deployment hpki-gateway, found {len(deployments)}")
        return
    dep = deployments[0]
    spec = dep["spec"]
    replicas = spec.get("replicas", 1)
    if replicas != 3:
        problem(f"Deployment replicas is {replicas}, the cluster runs 3")
    pod = spec["template"]
    labels = pod["metadata"].get("labels", {})
    selector = spec["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in selector.items()):
        problem(f"Deployment selector {selector} does not match its pod labels {labels}")
    roll = spec.get("strategy", {}).get("rollingUpdate", {})
    if roll.get("maxUnavailable") != 0:
        problem("rolling update: maxUnavailable must be 0 (a new pod is ready before an old one stops)")
    podspec = pod["spec"]
    if "hostname" in podspec or podspec.get("hostNetwork"):
        problem("the pod template sets hostname/hostNetwork: replicas would share one audit node id")
    containers = podspec["containers"]
    if len(containers) != 1:
        problem(f"expected one container, found {len(containers)}")
        return
    c = containers[0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    mounts = c.get("volumeMounts", [])
    volumes = {v["name"]: v for v in podspec.get("volumes", [])}

    # The configuration the pods read: the ConfigMap behind the mount of --config.
    args = c.get("args", [])
    if "--config" not in args:
        problem(f"container args {args} name no --config")
        return
    config_path = args[args.index("--config") + 1]
    config_mount = under(config_path, mounts)
    if config_mount is None:
        problem(f"--config {config_path} is on no volume")
        return
    cm_name = volumes[config_mount["name"]].get("configMap", {}).get("name")
    cms = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    if cm_name not in cms:
        problem(f"--config {config_path}: ConfigMap {cm_name} is not rendered")
        return
    key = config_path[len(config_mount["mountPath"].rstrip("/")) + 1 :]
    text = cms[cm_name].get("data", {}).get(key)
    if text is None:
        problem(f"ConfigMap {cm_name} has no key {key}")
        return
    committed = (ROOT / "deploy/kubernetes/gateway.toml").read_text()
    if text != committed:
        problem(f"ConfigMap {cm_name}/{key} differs from deploy/kubernetes/gateway.toml")
    cfg = tomllib.loads(text)

    # Ports: the listeners of the config are the container's ports, probes use them.
    if ports.get("https") != port_of(cfg["server"]["listen"]):
        problem(f"container port https {ports.get('https')} is not server.listen {cfg['server']['listen']}")
    admin_listen = cfg.get("admin", {}).get("listen", "127.0.0.1:9900")
    if ports.get("admin") != port_of(admin_listen):
        problem(f"container port admin {ports.get('admin')} is not admin.listen {admin_listen}")
    if not admin_listen.startswith("0.0.0.0:") and not admin_listen.startswith("[::]:"):
        problem(f"admin.listen {admin_listen}: the kubelet's probes need it on the pod IP")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        got = c.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") not in ("admin", ports.get("admin")):
            problem(f"{probe} must GET {path} on the admin port, is {got}")

    # Every file and directory the config names is on a volume of the right kind.
    def need(path, what, kinds):
        m = under(path, mounts)
        if m is None:
            problem(f"{what} {path} is on no volume")
            return None
        vol = volumes.get(m["name"], {})
        kind = next((k for k in ("configMap", "secret", "persistentVolumeClaim", "emptyDir") if k in vol), None)
        if kind not in kinds:
            problem(f"{what} {path} is on a {kind} volume, expected {' or '.join(kinds)}")
        if "subPath" in m:
            problem(f"{what}: mount {m['name']} uses subPath, which the kubelet never updates")
        return vol

    need(cfg["server"]["cert"], "server.cert", ["secret"])
    need(cfg["server"]["key"], "server.key", ["secret"])
    need(cfg["assertion"]["key"], "assertion.key", ["secret"])
    audit = cfg.get("audit", {})
    if "hmac_key" in audit:
        need(audit["hmac_key"], "audit.hmac_key", ["secret"])
    need(audit.get("dir", "/nonexistent"), "audit.dir", ["persistentVolumeClaim"])
    if "node" in audit:
        problem("gateway.toml sets audit.node: every replica would write the same node directory")
    if audit.get("on_failure", "refuse") != "refuse":
        problem("audit.on_failure must stay \"refuse\" in the cluster config")
    store = cfg.get("store", {}).get("url", "")
    if not store.startswith("postgres://"):
        problem(f"store.url {store!r}: replicas must share PostgreSQL")
    if re.match(r"postgres://[^/@]*:[^/@]*@", store):
        problem("store.url carries a password: it belongs in Secret hpki-gateway-db (PGPASSWORD)")
    env = {e["name"]: e for e in c.get("env", [])}
    if "PGPASSWORD" not in env:
        problem("the container has no PGPASSWORD for the store")
    for t in cfg.get("trust", []):
        d = t["dir"]
        anchors = under(d + "/anchors", mounts)
        if anchors is None or anchors["mountPath"].rstrip("/") != d + "/anchors":
            problem(f"trust {t['name']}: no volume mounted at {d}/anchors")
        for sub in ("anchors", "intermediates", "crls"):
            m = under(f"{d}/{sub}", mounts)
            if m is not None and m["mountPath"].rstrip("/") == f"{d}/{sub}":
                need(f"{d}/{sub}", f"trust {t['name']} {sub}/", ["configMap"])

    # Everything referenced exists (rendered, or created by the operator as documented).
    readme = (ROOT / "deploy/README.md").read_text()
    for name, vol in volumes.items():
        if "configMap" in vol:
            ref = vol["configMap"]["name"]
            if ("ConfigMap", ref) not in names and ref not in OPERATOR_CONFIGMAPS:
                problem(f"volume {name}: ConfigMap {ref} is neither rendered nor created by the operator")
        if "secret" in vol:
            ref = vol["secret"]["secretName"]
            if ref not in OPERATOR_SECRETS:
                problem(f"volume {name}: Secret {ref} is not one the operator creates")
        if "persistentVolumeClaim" in vol:
            ref = vol["persistentVolumeClaim"]["claimName"]
            if ("PersistentVolumeClaim", ref) not in names:
                problem(f"volume {name}: PVC {ref} is not rendered")
            else:
                pvc = next(d for d in by_kind["PersistentVolumeClaim"] if d["metadata"]["name"] == ref)
                if "ReadWriteMany" not in pvc["spec"].get("accessModes", []):
                    problem(f"PVC {ref}: three replicas on different nodes need ReadWriteMany")
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
        if ref and ref not in OPERATOR_SECRETS:
            problem(f"env {e['name']}: Secret {ref} is not one the operator creates")
    for ref in OPERATOR_SECRETS | OPERATOR_CONFIGMAPS:
        if ref not in readme:
            problem(f"deploy/README.md does not say how to create {ref}")

    # The trust ConfigMaps are exactly the files of certs/hpki (nothing listed is missing,
    # nothing in the directory is left out of kustomization.yaml).
    for name, directory in TRUST_CONFIGMAPS.items():
        if name not in cms:
            problem(f"ConfigMap {name} is not rendered")
            continue
        data = {k: base64.b64decode(v) for k, v in cms[name].get("binaryData", {}).items()}
        data.update({k: v.encode() for k, v in cms[name].get("data", {}).items()})
        files = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
        if data != files:
            problem(
                f"ConfigMap {name} holds {sorted(data)}, {directory.relative_to(ROOT)} has {sorted(files)}"
                " (list every file in certs/hpki/kustomization.yaml)"
            )

    # Selectors of the Services, the PDB and the NetworkPolicy pick these pods.
    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector", {})
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            for p in svc["spec"]["ports"]:
                target = p.get("targetPort")
                if target not in ports and target not in ports.values():
                    problem(f"Service {svc['metadata']['name']} targets port {target}, not a container port")
                if p.get("protocol", "TCP") != "TCP":
                    problem(f"Service {svc['metadata']['name']} port {p['name']} is not TCP")
    public = [s for s in by_kind.get("Service", []) if s["spec"].get("type") == "LoadBalancer"]
    if len(public) != 1 or public[0]["spec"]["ports"][0].get("port") != 443:
        problem("expected one LoadBalancer Service on TCP 443 (TLS passthrough)")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if not pdbs:
        problem("no PodDisruptionBudget")
    for pdb in pdbs:
        sel = pdb["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            problem(f"PodDisruptionBudget selector {sel} does not pick the gateway's pods")
        if not 0 < pdb["spec"].get("minAvailable", 0) < replicas:
            problem("PodDisruptionBudget minAvailable must allow one disruption and keep a majority")
    for np in by_kind.get("NetworkPolicy", []):
        sel = np["spec"]["podSelector"].get("matchLabels", {})
        if any(labels.get(k) != v for k, v in sel.items()):
            problem(f"NetworkPolicy {np['metadata']['name']} does not select the gateway's pods")

    # Shutdown: the grace period covers the preStop pause and the gateway's drain.
    grace = podspec.get("terminationGracePeriodSeconds", 30)
    drain = duration_seconds(cfg.get("timeouts", {}).get("shutdown_grace", "30s"))
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre[-1]) if pre and pre[-1].isdigit() else 0
    if grace < pause + drain + 5:
        problem(f"terminationGracePeriodSeconds {grace} < preStop {pause} + shutdown_grace {drain} + 5 s for the audit flush")

    # Non-root, as the image's user.
    sc = {**podspec.get("securityContext", {}), **c.get("securityContext", {})}
    containerfile = (ROOT / "deploy/container/Containerfile").read_text()
    user = re.findall(r"^USER (\d+)", containerfile, re.M)
    if not sc.get("runAsNonRoot") or not user or sc.get("runAsUser") != int(user[-1]):
        problem(f"pod runs as {sc.get('runAsUser')}, the image's USER is {user}; runAsNonRoot must be set")
    if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
        problem("the container must have a read-only root file system and no privilege escalation")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        problem("the container must drop every capability")


# ---- render: the part of kustomize that our kustomizations use --------------------------

KUSTOMIZATION_API = "kustomize.config.k8s.io/v1beta1"
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "configMapGenerator", "generatorOptions", "images"}
# Kinds whose namespace handling is only metadata.namespace (or none) and whose only
# references this renderer rewrites are a pod spec's ConfigMap names. Others (RoleBinding
# subjects, webhook configurations, custom resources, ...) get more from kustomize.
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass"}
POD_TEMPLATE = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
NAMESPACED = POD_TEMPLATE | {
    "Pod", "CronJob", "ConfigMap", "Secret", "Service", "ServiceAccount", "PersistentVolumeClaim",
    "PodDisruptionBudget", "NetworkPolicy", "Ingress", "Role", "HorizontalPodAutoscaler",
}
# kustomize's name suffix alphabet (hex without 0, 1, 3, a, e); the hash itself differs.
HASH_SUFFIX = re.compile(r"-[2456789bcdfghkmt]{10}$")


class RenderError(Exception):
    pass


def render(directory):
    objects, generated = render_dir(pathlib.Path(directory).resolve())
    # References to a hashed ConfigMap follow its new name (kustomize's nameReference),
    # within its namespace.
    renamed = {}
    for cm, name in generated:
        key = (cm["metadata"].get("namespace"), name)
        if key in renamed:
            raise RenderError(f"ConfigMap {name} is generated twice")
        renamed[key] = cm["metadata"]["name"]
    ids = set()
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        if key in ids:
            raise RenderError(f"{obj['kind']} {meta['name']} is defined twice")
        ids.add(key)
        for ref in configmap_refs(obj):
            key = (meta.get("namespace"), ref.get("name"))
            if key in renamed:
                ref["name"] = renamed[key]
    return objects


def render_dir(d):
    """The objects of the kustomization in `d`, and the hashed ConfigMaps it generated
    (each with its name before the hash)."""
    path = next((d / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (d / n).is_file()), None)
    if path is None:
        raise RenderError(f"{d} holds no kustomization.yaml")
    k = yaml.safe_load(path.read_text()) or {}
    refuse_unknown(path, "", k, KUSTOMIZATION_FIELDS)
    if (k.get("apiVersion", KUSTOMIZATION_API), k.get("kind", "Kustomization")) != (KUSTOMIZATION_API, "Kustomization"):
        raise RenderError(f"{path}: not a {KUSTOMIZATION_API} Kustomization")

    objects, generated = [], []
    for entry in k.get("resources", []):
        p = d / entry
        if p.is_dir():
            sub_objects, sub_generated = render_dir(p.resolve())
            objects += sub_objects
            generated += sub_generated
        elif p.is_file():
            for obj in yaml.safe_load_all(inside(d, p).read_text()):
                if not obj:
                    continue
                if obj.get("kind") not in CLUSTER_SCOPED | NAMESPACED:
                    raise RenderError(f"{p}: kind {obj.get('kind')} is not implemented by this renderer")
                if "name" not in obj.get("metadata", {}):
                    raise RenderError(f"{p}: a {obj['kind']} without metadata.name")
                objects.append(obj)
        else:
            raise RenderError(f"{path}: resource {entry} is neither a file nor a directory")

    options = k.get("generatorOptions", {})
    refuse_unknown(path, "generatorOptions.", options, {"disableNameSuffixHash", "labels"})
    for gen in k.get("configMapGenerator", []):
        refuse_unknown(path, "configMapGenerator.", gen, {"name", "files"})
        data, binary = {}, {}
        for f in gen.get("files", []):
            if "=" in f:
                raise RenderError(f"{path}: configMapGenerator.files {f}: key=path is not implemented")
            content = inside(d, d / f).read_bytes()
            key = pathlib.Path(f).name
            if key in data or key in binary:
                raise RenderError(f"{path}: ConfigMap {gen['name']} has two files named {key}")
            try:
                data[key] = content.decode("utf-8")
            except UnicodeDecodeError:
                binary[key] = base64_lines(content)
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}}
        if options.get("labels"):
            cm["metadata"]["labels"] = dict(options["labels"])
        if data:
            cm["data"] = data
        if binary:
            cm["binaryData"] = binary
        if not options.get("disableNameSuffixHash"):
            canonical = json.dumps({"name": gen["name"], "data": data, "binaryData": binary}, sort_keys=True)
            digest = hashlib.sha256(canonical.encode()).hexdigest()[:10].translate(str.maketrans("013ae", "ghkmt"))
            cm["metadata"]["name"] = f"{gen['name']}-{digest}"
            generated.append((cm, gen["name"]))
        objects.append(cm)

    if "namespace" in k:
        for obj in objects:
            if obj["kind"] == "Namespace":
                obj["metadata"]["name"] = k["namespace"]  # as kustomize does
            elif obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]

    for img in k.get("images", []):
        refuse_unknown(path, "images.", img, {"name", "newName", "newTag"})
        for c in containers(objects):
            name, tag, digest = split_image(c.get("image", ""))
            if name == img["name"]:
                if "newTag" in img:
                    tag, digest = str(img["newTag"]), None
                c["image"] = img.get("newName", name) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return objects, generated


def refuse_unknown(path, prefix, mapping, known):
    unknown = sorted(set(mapping) - known)
    if unknown:
        fields = ", ".join(prefix + f for f in unknown)
        raise RenderError(f"{path}: {fields} is not implemented by this renderer (kubectl kustomize is needed)")


def inside(root, path):
    """`path`, if it is in or below `root` (kustomize's load restriction)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise RenderError(f"{path} is not in or below {root}")
    return resolved


def base64_lines(content):
    """Base64 in lines of 70, each ending in a newline, as kustomize writes binaryData."""
    text = base64.b64encode(content).decode()
    if len(text) < 70:
        return text
    return "".join(text[i : i + 70] + "\n" for i in range(0, len(text), 70))


def split_image(image):
    image, _, digest = image.partition("@")
    name, tag = image, None
    if ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
    return name, tag, digest or None


def pod_spec(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    elif obj["kind"] not in POD_TEMPLATE:
        return {}
    return spec.get("template", {}).get("spec", {})


def containers(objects):
    for obj in objects:
        spec = pod_spec(obj)
        yield from spec.get("containers", []) + spec.get("initContainers", [])


def configmap_refs(obj):
    """The mappings whose "name" names a ConfigMap in `obj`'s pod spec."""
    spec = pod_spec(obj)
    for v in spec.get("volumes", []):
        if "configMap" in v:
            yield v["configMap"]
        for source in v.get("projected", {}).get("sources", []):
            if "configMap" in source:
                yield source["configMap"]
    for c in containers([obj]):
        for e in c.get("env", []):
            if "configMapKeyRef" in e.get("valueFrom", {}):
                yield e["valueFrom"]["configMapKeyRef"]
        for e in c.get("envFrom", []):
            if "configMapRef" in e:
                yield e["configMapRef"]


class BlockDumper(yaml.SafeDumper):
    """Multi-line strings (gateway.toml, base64) as literal blocks, as kustomize writes them."""


BlockDumper.add_representer(
    str, lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)


# ---- compare: the fallback against kustomize ---------------------------------------------


def by_id(rendered_path):
    """The objects of a rendered stream by (kind, namespace, name), every hashed ConfigMap
    name (in the ConfigMap and wherever it is referenced) with its hash as -HASH."""
    docs = [d for d in yaml.safe_load_all(open(rendered_path)) if d]
    hashed = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap" and HASH_SUFFIX.search(d["metadata"]["name"])}

    def normalise(v):
        if isinstance(v, dict):
            return {k: normalise(x) for k, x in v.items()}
        if isinstance(v, list):
            return [normalise(x) for x in v]
        return HASH_SUFFIX.sub("-HASH", v) if isinstance(v, str) and v in hashed else v

    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in map(normalise, docs)}


def compare(kustomize_path, fallback_path):
    expected, got = by_id(kustomize_path), by_id(fallback_path)
    for key in sorted(expected.keys() | got.keys()):
        what = "{} {}/{}".format(*key)
        if key not in got:
            problem(f"fallback renderer: {what} is rendered by kustomize only")
        elif key not in expected:
            problem(f"fallback renderer: {what} is rendered by the fallback only")
        elif expected[key] != got[key]:
            diff = difflib.unified_diff(
                yaml.safe_dump(expected[key]).splitlines(),
                yaml.safe_dump(got[key]).splitlines(),
                "kustomize",
                "fallback",
                lineterm="",
            )
            problem(f"fallback renderer: {what} differs from kustomize's:\n" + "\n".join(diff))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "render":
        try:
            yaml.dump_all(render(args[1]), sys.stdout, Dumper=BlockDumper, sort_keys=False)
        except (RenderError, yaml.YAMLError) as e:
            sys.exit(f"deploy check: render {args[1]}: {e}")
        sys.exit(0)
    elif len(args) == 3 and args[0] == "compare":
        compare(args[1], args[2])
        done = f"the fallback renderer's {args[2]} equals kustomize's (ConfigMap name hashes aside)"
    elif len(args) == 1:
        main(args[0])
        done = "the manifests fit together and fit the gateway's config"
    else:
        sys.exit(__doc__)
    for p in problems:
        print(f"deploy check: {p}")
    if problems:
        sys.exit(1)
    print(f"deploy check: {done}")
