"""Dev routes are never reachable from outside the cluster (offline, on the rendered overlays).

tier-gate's `POST /dev/identity` mints any identity and sets any user's tier, and in dev
broker-handoff trusts that issuer. With `TG_ENV=dev` the app serves those routes on the API
port unless `TG_DEV_HTTP_PORT` gives them a listener of their own (tier-gate refuses a dev API
beyond loopback without one; tests/security/test_dev_routes_listener.py). So, for every
Deployment in dev mode, in every overlay:

- the dev routes have their own port, not the API port;
- no NetworkPolicy rule admits that port from another namespace (the ingress controller's,
  Prometheus's, anyone's), from an ipBlock, or from anywhere; only the named in-cluster callers
  (broker-handoff's pods, in this namespace) may connect;
- no Service maps that port as NodePort/LoadBalancer/externalIPs, and no Ingress routes to a
  Service port that maps to it, or routes a `/dev` path at all;
- a service that trusts the dev issuer fetches it from that internal port.
"""

from __future__ import annotations

import copy
from urllib.parse import urlsplit

import pytest

from tests.deploy import k8s_checks as k
from tests.deploy.k8s_checks import Obj

# service -> (env prefix, default API port, the dev routes it can serve)
DEV_ROUTES = {"tier-gate": ("TG", 8082, ("/dev/identity", "/dev/identity/jwks.json"))}
# pods (app.kubernetes.io/name, same namespace) that may call the dev listener
DEV_CALLERS = frozenset({"broker-handoff"})
# settings that point a service at the dev identity issuer
DEV_ISSUER_URLS = {"broker-handoff": "BH_IDENTITY_JWKS_URL", "tier-gate": "TG_IDENTITY_JWKS_URL"}


@pytest.fixture(scope="module", params=k.OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    return k.render(k.K8S / "overlays" / request.param)


def _labels(d: Obj) -> dict[str, str]:
    return dict(d["spec"]["template"]["metadata"]["labels"])


def _container_ports(d: Obj) -> dict[str, int]:
    return {
        p["name"]: int(p["containerPort"])
        for c in d["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports") or []
        if "name" in p
    }


def _resolve(port: object, named: dict[str, int]) -> int | None:
    return named.get(port) if isinstance(port, str) else int(port)  # type: ignore[arg-type]


def _admits(rule: Obj, port: int, named: dict[str, int]) -> bool:
    """Whether a NetworkPolicy ingress rule lets traffic reach `port` (no ports = every port)."""
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("port") is None:
            return True
        first = _resolve(p["port"], named)
        if first is not None and first <= port <= int(p.get("endPort", first)):
            return True
    return False


def _peer(peer: Obj) -> str | None:
    """Why a `from` peer is not an allowed in-cluster caller (None when it is one)."""
    if "anywhere" in peer:  # a rule without `from`
        return "anywhere"
    if "ipBlock" in peer:
        return f"ipBlock {peer['ipBlock'].get('cidr')}"
    if "namespaceSelector" in peer:
        return f"namespaces {peer['namespaceSelector'] or 'all'}"
    pods = peer.get("podSelector")
    if not pods:
        return "every pod of the namespace"
    name = (pods.get("matchLabels") or {}).get("app.kubernetes.io/name")
    if name not in DEV_CALLERS or pods.get("matchExpressions"):
        return f"pods {pods}"
    return None


def dev_route_exposure(objs: list[Obj]) -> list[str]:
    """Every way the rendered objects let a dev route be reached from outside; [] when none."""
    problems: list[str] = []
    deployments = k.by_kind(objs, "Deployment")
    services = k.by_kind(objs, "Service")
    for name, (pfx, default_port, routes) in DEV_ROUTES.items():
        d = deployments.get(name)
        if d is None:
            continue
        env = k.pod_env(objs, d)
        if env.get(f"{pfx}_ENV", "prod") != "dev":
            continue
        api_port = int(env.get(f"{pfx}_HTTP_PORT", default_port))
        dev_port = int(env.get(f"{pfx}_DEV_HTTP_PORT") or api_port)
        if dev_port == api_port:
            problems.append(
                f"{name}: {pfx}_ENV=dev serves {', '.join(routes)} on its API port {api_port} "
                f"(set {pfx}_DEV_HTTP_PORT: a listener of their own)"
            )
        named, labels = _container_ports(d), _labels(d)
        for pol in k.by_kind(objs, "NetworkPolicy").values():
            spec = pol["spec"]
            if "Ingress" not in spec.get("policyTypes", []) or not k.selects(
                spec["podSelector"], labels
            ):
                continue
            for rule in spec.get("ingress") or []:
                if not _admits(rule, dev_port, named):
                    continue
                peers = rule.get("from") or [{"anywhere": True}]
                for peer in peers:
                    if (why := _peer(peer)) is not None:
                        problems.append(
                            f"NetworkPolicy {pol['metadata']['name']} lets {why} reach {name}'s "
                            f"dev routes (port {dev_port})"
                        )
        dev_services: dict[str, set[int]] = {}
        for svc_name, svc in services.items():
            if not k.selects({"matchLabels": svc["spec"].get("selector") or {}}, labels):
                continue
            for p in svc["spec"].get("ports") or []:
                if _resolve(p.get("targetPort", p["port"]), named) != dev_port:
                    continue
                dev_services.setdefault(svc_name, set()).add(int(p["port"]))
                kind = svc["spec"].get("type", "ClusterIP")
                if kind != "ClusterIP" or svc["spec"].get("externalIPs"):
                    problems.append(f"Service {svc_name} exposes {name}'s dev port as {kind}")
        for ing in k.by_kind(objs, "Ingress").values():
            for rule in ing["spec"].get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    backend = path["backend"].get("service") or {}
                    ports = dev_services.get(backend.get("name", ""), set())
                    if path.get("path", "/").startswith("/dev") or (
                        ports and backend.get("port", {}).get("number") in ports | {None}
                    ):
                        problems.append(
                            f"Ingress {ing['metadata']['name']} routes {path.get('path')} to "
                            f"{name}'s dev routes"
                        )
        for caller, var in DEV_ISSUER_URLS.items():
            cd = deployments.get(caller)
            url = k.pod_env(objs, cd).get(var, "") if cd is not None else ""
            if "/dev/" not in url:
                continue
            parts = urlsplit(url)
            host = (parts.hostname or "").split(".")[0]
            if parts.port not in dev_services.get(host, set()):
                problems.append(
                    f"{caller}: {var}={url} is not {name}'s internal dev listener "
                    f"({sorted(dev_services) or 'none'})"
                )
    return problems


def test_dev_routes_are_never_reachable_from_outside_the_cluster(rendered: list[Obj]) -> None:
    assert dev_route_exposure(rendered) == []


def test_prod_has_no_dev_mode_and_trusts_no_dev_issuer() -> None:
    objs = k.render(k.K8S / "overlays" / "prod")
    for name, d in k.by_kind(objs, "Deployment").items():
        env = k.pod_env(objs, d)
        assert all(v != "dev" for key, v in env.items() if key.endswith("_ENV")), name
        assert not [v for v in env.values() if "/dev/" in v], name


def test_dev_overlay_serves_the_dev_issuer_to_broker_handoff_only() -> None:
    objs = k.render(k.K8S / "overlays" / "dev")
    env = k.pod_env(objs, k.by_kind(objs, "Deployment")["tier-gate"])
    assert env["TG_ENV"] == "dev"
    assert env.get("TG_DEV_HTTP_PORT"), "dev routes need a listener of their own"
    bh = k.pod_env(objs, k.by_kind(objs, "Deployment")["broker-handoff"])
    assert "/dev/identity/jwks.json" in bh["BH_IDENTITY_JWKS_URL"]


def _tier_gate_config(objs: list[Obj]) -> Obj:
    (cm,) = [
        o for o in objs
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tier-gate-config")
    ]  # fmt: skip
    return cm


def test_checker_catches_dev_routes_on_the_public_listener() -> None:
    """The shape the dev overlay had: dev routes on the API port that the ingress reaches."""
    objs = copy.deepcopy(k.render(k.K8S / "overlays" / "dev"))
    del _tier_gate_config(objs)["data"]["TG_DEV_HTTP_PORT"]
    problems = dev_route_exposure(objs)
    assert any("on its API port 8082" in p for p in problems), problems
    assert any("allow-ingress-public-api lets namespaces" in p for p in problems), problems
    assert any("BH_IDENTITY_JWKS_URL" in p for p in problems), problems


def test_checker_catches_an_ingress_or_open_policy_to_the_dev_port() -> None:
    objs = copy.deepcopy(k.render(k.K8S / "overlays" / "dev"))
    objs.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "md"},
        "spec": {"rules": [{"http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "tier-gate-dev-identity", "port": {"number": 8092}}},
        }]}}]},
    })  # fmt: skip
    objs.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "oops"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    })  # fmt: skip
    problems = dev_route_exposure(objs)
    assert any(p.startswith("Ingress md routes") for p in problems), problems
    assert any("oops lets anywhere" in p for p in problems), problems
