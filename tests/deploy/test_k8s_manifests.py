"""deploy/k8s rendered and checked offline: schemas, security rules, network policy, alerts.

Plain pytest, no servers, no cluster: a few seconds. See deploy/README.md, "Validation".
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml

from tests.deploy import k8s_checks as k
from tests.deploy.k8s_checks import Obj

KUBERNETES_VERSION = "1.33.0"
# CRDs: no schema ships offline, so they are checked structurally below.
CRD_GROUPS = ("monitoring.coreos.com/", "postgresql.cnpg.io/", "external-secrets.io/")
# Secrets the manifests may reference by name, because an operator creates them.
OPERATOR_SECRETS = {"raxx-pg-app"}  # CloudNativePG, Cluster raxx-pg


@pytest.fixture(scope="module", params=k.OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    return k.render(k.K8S / "overlays" / request.param)


@pytest.fixture(scope="module")
def exported() -> dict[str, k.Exported]:
    return k.exported_metrics()


def _deployments(objs: list[Obj]) -> dict[str, Obj]:
    return k.by_kind(objs, "Deployment")


def _pod_labels(d: Obj) -> dict[str, str]:
    return dict(d["spec"]["template"]["metadata"]["labels"])


def test_every_overlay_has_the_four_services(rendered: list[Obj]) -> None:
    assert set(_deployments(rendered)) == set(k.SERVICES)
    assert {o["metadata"].get("namespace") for o in rendered} in ({"raxx-md"}, {"raxx-md-dev"})


def test_builtin_kinds_match_the_kubernetes_schemas(rendered: list[Obj]) -> None:
    errors = []
    for o in rendered:
        if o["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {exc.message} at {exc.path}")
    assert not errors, "\n".join(errors)


def test_pods_are_non_root_read_only_limited_and_probed(rendered: list[Obj]) -> None:
    for name, d in _deployments(rendered).items():
        pod = d["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True, name
        assert sc.get("runAsUser", 1) != 0, name
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in pod["containers"]:
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, name
            assert csc["allowPrivilegeEscalation"] is False, name
            assert csc["capabilities"]["drop"] == ["ALL"], name
            assert csc.get("runAsNonRoot", True) is True, name
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][section]), (name, section)
            port_names = {p["name"] for p in c["ports"]}
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            for probe in ("readinessProbe", "livenessProbe"):
                assert c[probe]["httpGet"]["port"] in port_names, (name, probe)
            image = c["image"]
            assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], image
            assert not image.endswith(":latest"), image


def test_service_account_tokens_only_for_vault(rendered: list[Obj]) -> None:
    """No API token anywhere; a projected token only where Vault Kubernetes auth uses it."""
    sas = k.by_kind(rendered, "ServiceAccount")
    for name, d in _deployments(rendered).items():
        pod = d["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert sas[pod["serviceAccountName"]]["automountServiceAccountToken"] is False, name
        env = k.pod_env(rendered, d)
        pfx = k.SERVICES[name][1]
        tokens = [
            s["serviceAccountToken"]
            for v in pod["volumes"]
            for s in (v.get("projected") or {}).get("sources", [])
            if "serviceAccountToken" in s
        ]
        if tokens:
            assert env.get(f"{pfx}_VAULT__AUTH") == "kubernetes", f"{name}: unjustified token"
        for t in tokens:
            assert t["audience"] == "vault", name
            assert t["expirationSeconds"] <= 3600, name


def test_vault_kubernetes_auth_and_config_from_configmaps(rendered: list[Obj]) -> None:
    for name, d in _deployments(rendered).items():
        pfx = k.SERVICES[name][1]
        env = k.pod_env(rendered, d)
        if name in k.NO_VAULT:  # its only secret (NATS creds) comes via External Secrets
            assert not any(key.startswith(f"{pfx}_VAULT") for key in env), name
        else:
            assert env[f"{pfx}_VAULT__AUTH"] == "kubernetes", name
            assert env[f"{pfx}_VAULT__ROLE"] == name, name
        assert env[f"{pfx}_HTTP_HOST"] == "0.0.0.0", name
        assert f"{pfx}_VAULT__TOKEN" not in env, name
        assert env[f"{pfx}_ENV"] in ("dev", "prod"), name


def test_no_secret_in_any_manifest(rendered: list[Obj]) -> None:
    assert not k.secret_findings(rendered)


def test_secret_references_resolve_to_operators(rendered: list[Obj]) -> None:
    """Secrets are referenced only when External Secrets or CloudNativePG create them."""
    targets = {
        es["spec"]["target"]["name"] for es in k.by_kind(rendered, "ExternalSecret").values()
    }
    allowed = targets | OPERATOR_SECRETS
    for name, d in _deployments(rendered).items():
        pod = d["spec"]["template"]["spec"]
        for v in pod["volumes"]:
            if "secret" in v:
                assert v["secret"]["secretName"] in allowed, (name, v)
        for c in pod["containers"]:
            for item in c.get("env") or []:
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in allowed, (name, item)


def test_secret_stores_use_the_services_own_identity(rendered: list[Obj]) -> None:
    sas = k.by_kind(rendered, "ServiceAccount")
    stores = k.by_kind(rendered, "SecretStore")
    for store in stores.values():
        assert store["apiVersion"] == "external-secrets.io/v1"
        vault = store["spec"]["provider"]["vault"]
        assert vault["version"] == "v2"
        assert vault["path"] == "secret"
        auth = vault["auth"]["kubernetes"]
        assert auth["serviceAccountRef"]["name"] in sas
        assert auth["serviceAccountRef"]["audiences"] == ["vault"]
        assert auth["role"] == auth["serviceAccountRef"]["name"]
    for es in k.by_kind(rendered, "ExternalSecret").values():
        assert es["spec"]["secretStoreRef"]["name"] in stores
        assert "{{ .jwt }}" in es["spec"]["target"]["template"]["data"]["creds"]
        keys = {d["remoteRef"]["key"] for d in es["spec"]["data"]}
        assert len(keys) == 1
        assert next(iter(keys)).startswith("raxx/nats/services/")


def _policies_for(objs: list[Obj], d: Obj) -> list[Obj]:
    labels = _pod_labels(d)
    return [
        p
        for p in k.by_kind(objs, "NetworkPolicy").values()
        if k.selects(p["spec"]["podSelector"], labels)
    ]


def _egress_rules(objs: list[Obj], d: Obj) -> list[Obj]:
    return [
        r
        for p in _policies_for(objs, d)
        if "Egress" in p["spec"]["policyTypes"]
        for r in p["spec"].get("egress") or []
    ]


def check_network_policy(objs: list[Obj], may_leave: frozenset[str]) -> None:
    """Default deny, DNS to kube-dns, and ipBlock egress only for `may_leave`, only on 443."""
    for name, d in _deployments(objs).items():
        policies = _policies_for(objs, d)
        assert any(
            set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
            for p in policies
        ), f"{name}: no default deny"
        for p in policies:
            for r in p["spec"].get("ingress") or []:
                assert r.get("from"), (
                    f"{name}: {p['metadata']['name']} allows ingress from anywhere"
                )
        rules = _egress_rules(objs, d)
        external = False
        dns = False
        for r in rules:
            assert r.get("to"), f"{name}: an egress rule without `to` allows everything"
            ports = {(pt.get("protocol", "TCP"), pt.get("port")) for pt in r.get("ports") or []}
            assert ports, f"{name}: an egress rule without ports"
            for peer in r["to"]:
                if "ipBlock" in peer:
                    external = True
                    assert name in may_leave, f"{name} may not leave the cluster"
                    assert ports == {("TCP", 443)}, f"{name}: external egress must be 443 only"
                    net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert net.prefixlen >= 8, f"{name}: {net} is far too wide"
                    continue
                assert "namespaceSelector" in peer or "podSelector" in peer, peer
                ns = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                pod = (peer.get("podSelector") or {}).get("matchLabels") or {}
                if (
                    ns.get("kubernetes.io/metadata.name") == "kube-system"
                    and pod.get("k8s-app") == "kube-dns"
                ):
                    dns = dns or ("UDP", 53) in ports
        assert dns, f"{name}: no DNS egress to kube-dns"
        assert external == (name in may_leave), f"{name}: Alpaca egress {external}"


def test_network_policy_only_hub_and_broker_handoff_leave(rendered: list[Obj]) -> None:
    check_network_policy(rendered, k.ALLOWED_EXTERNAL_EGRESS)


def _configmap_env(objs: list[Obj], name: str) -> dict[str, str]:
    maps = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(name)]
    assert len(maps) == 1, name
    return dict(maps[0]["data"])


def test_settler_reaches_alpaca_only_through_the_hub(rendered: list[Obj]) -> None:
    """The settler's Alpaca URLs are the hub's /alpaca passthrough, allowed both ways on the
    hub's port; it reads its hub client from Vault, not the Alpaca key."""
    ns = rendered[0]["metadata"]["namespace"]
    env = _configmap_env(rendered, "eod-settler-config")
    hub_svc = k.by_kind(rendered, "Service")["market-data-hub"]
    port = hub_svc["spec"]["ports"][0]["port"]
    url = f"http://market-data-hub.{ns}.svc:{port}/alpaca"
    assert env["EOD_ALPACA_DATA_URL"] == env["EOD_ALPACA_TRADING_URL"] == url
    assert env["EOD_VAULT__PATH"] == "raxx/eod-settler/hub-client"
    hub_env = _configmap_env(rendered, "market-data-hub-config")
    assert hub_env["MDH_ALPACA_TRADING_URL"].startswith("https://")
    deps = _deployments(rendered)
    settler, hub = deps["eod-settler"], deps["market-data-hub"]
    to_hub = [
        r for r in _egress_rules(rendered, settler)
        for peer in r["to"]
        if k.selects(peer.get("podSelector") or {"matchLabels": {"x": "none"}}, _pod_labels(hub))
        and "namespaceSelector" not in peer
        and {("TCP", port)} == {(p.get("protocol", "TCP"), p["port"]) for p in r["ports"]}
    ]  # fmt: skip
    assert to_hub, "no egress from eod-settler to market-data-hub"
    from_settler = [
        r for p in _policies_for(rendered, hub) if "Ingress" in p["spec"]["policyTypes"]
        for r in p["spec"].get("ingress") or []
        for peer in r["from"]
        if k.selects(peer.get("podSelector") or {"matchLabels": {"x": "none"}},
                     _pod_labels(settler))
        and "namespaceSelector" not in peer
        and {("TCP", port)} == {(p.get("protocol", "TCP"), p["port"]) for p in r["ports"]}
    ]  # fmt: skip
    assert from_settler, "no ingress to market-data-hub from eod-settler"


def test_vault_policies_settler_has_no_alpaca_key() -> None:
    settler = (k.ROOT / "deploy" / "vault" / "policies" / "eod-settler.hcl").read_text()
    hub = (k.ROOT / "deploy" / "vault" / "policies" / "market-data-hub.hcl").read_text()
    assert "raxx/alpaca/" not in settler
    assert '"secret/data/raxx/eod-settler/hub-client"' in settler
    assert '"secret/data/raxx/market-data-hub/service-clients"' in hub
    assert '"secret/data/raxx/alpaca/market-data"' in hub


def test_replicas_pdbs_and_autoscaling(rendered: list[Obj]) -> None:
    deps = _deployments(rendered)
    assert deps["market-data-hub"]["spec"]["replicas"] == 2
    assert "replicas" not in deps["tier-gate"]["spec"], "the HPA owns tier-gate's replica count"
    hpas = [h for h in k.by_kind(rendered, "HorizontalPodAutoscaler").values()]
    assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["tier-gate"]
    assert hpas[0]["spec"]["minReplicas"] >= 1
    assert hpas[0]["spec"]["maxReplicas"] > 1
    pdbs = list(k.by_kind(rendered, "PodDisruptionBudget").values())
    for name, d in deps.items():
        mine = [p for p in pdbs if k.selects(p["spec"]["selector"], _pod_labels(d))]
        assert len(mine) == 1, name
    hub_pdb = next(p for p in pdbs if p["metadata"]["name"] == "market-data-hub")
    assert hub_pdb["spec"]["minAvailable"] == 1


def test_services_and_monitors_select_something(rendered: list[Obj]) -> None:
    deps = _deployments(rendered)
    services = k.by_kind(rendered, "Service")
    for s in services.values():
        assert any(
            k.selects({"matchLabels": s["spec"]["selector"]}, _pod_labels(d)) for d in deps.values()
        )
    for sm in k.by_kind(rendered, "ServiceMonitor").values():
        matched = [
            s
            for s in services.values()
            if k.selects(sm["spec"]["selector"], s["metadata"].get("labels") or {})
        ]
        assert matched, sm["metadata"]["name"]
        port_names = {p["name"] for s in matched for p in s["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            assert ep["port"] in port_names
            assert ep["path"] == "/metrics"
    assert {sm for sm in k.by_kind(rendered, "ServiceMonitor")} == set(k.SERVICES)


def test_postgres_cluster_is_the_operators_cr(rendered: list[Obj]) -> None:
    (cluster,) = k.by_kind(rendered, "Cluster").values()
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert isinstance(spec["instances"], int)
    assert spec["instances"] >= 1
    assert spec["storage"]["size"]
    assert spec["bootstrap"]["initdb"]["database"] == "raxx"
    assert ":" in spec["imageName"]
    assert not spec["imageName"].endswith(":latest")


REQUIRED_ALERTS = {
    "upstream down": "MdhUpstreamDown",
    "delay-line lag": "MdhDelayLineLagging",
    "symbols near the cap": "MdhSymbolsNearCap",
    "REST limiter saturated": "MdhRestLimiterSaturated",
    "settle batch late": "EodSettleBatchLate",
    "credential issuance failing": "TgCredentialIssuanceFailing",
}


def test_prometheus_rules_are_well_formed(rendered: list[Obj]) -> None:
    (rule_obj,) = k.by_kind(rendered, "PrometheusRule").values()
    assert rule_obj["apiVersion"] == "monitoring.coreos.com/v1"
    names = []
    for group in rule_obj["spec"]["groups"]:
        assert group["name"]
        assert group["rules"]
        for rule in group["rules"]:
            names.append(rule["alert"])
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            promql_parser.parse_duration(rule["for"])
    assert len(names) == len(set(names))
    missing = {what for what, alert in REQUIRED_ALERTS.items() if alert not in names}
    assert not missing


def _check_queries(queries: list[tuple[str, str]], exported: dict[str, k.Exported]) -> list[str]:
    known: dict[str, frozenset[str]] = {}
    for e in exported.values():
        known.update(e.labels)
    problems = []
    for where, expr in queries:
        try:
            found = k.selectors(expr)
        except ValueError as exc:
            problems.append(f"{where}: PromQL does not parse: {exc}")
            continue
        for metric, labels in found:
            if metric in k.PROMETHEUS_SERIES:
                continue
            if metric not in known:
                problems.append(f"{where}: {metric} is exported by no service")
                continue
            unknown = labels - known[metric] - k.TARGET_LABELS
            if unknown:
                problems.append(f"{where}: {metric} has no label {sorted(unknown)}")
    return problems


def test_alerts_name_metrics_the_services_export(
    rendered: list[Obj], exported: dict[str, k.Exported]
) -> None:
    assert not _check_queries(k.alert_exprs(rendered), exported)


def test_dashboard_queries_name_metrics_the_hub_exports(
    rendered: list[Obj], exported: dict[str, k.Exported]
) -> None:
    boards = k.dashboards(rendered)
    assert boards, "no dashboard ConfigMap labelled grafana_dashboard"
    for where, board in boards.items():
        queries = [(w, k.grafana_to_promql(q)) for w, q in k.dashboard_exprs(board)]
        assert len(queries) > 10, where
        assert not _check_queries(queries, exported)
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), where


def test_metric_names_come_from_the_services_code(exported: dict[str, k.Exported]) -> None:
    prefixes = {
        "market-data-hub": "mdh_",
        "tier-gate": "tg_",
        "broker-handoff": "bh_",
        "eod-settler": "eod_",
        "md-replay": "mdr_",
    }
    for service, e in exported.items():
        assert e.labels, service
        assert all(n.startswith(prefixes[service]) for n in e.labels), service


def test_checker_catches_bad_queries(exported: dict[str, k.Exported]) -> None:
    """The checker itself: unknown metric, unknown label and broken syntax are all reported."""
    bad = [
        ("a", "rate(mdh_no_such_metric_total[5m]) > 0"),
        ("b", 'mdh_leader{asset="x"} > 0'),
        ("c", "sum(rate(mdh_messages_in_total[5m])"),
    ]
    assert len(_check_queries(bad, exported)) == 3


def test_checker_catches_secrets_and_open_egress() -> None:
    leaky: list[dict[str, Any]] = [
        {"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}},
        {
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"X_DATABASE_URL": "postgresql://u:pw@h/db"},
        },
        {"kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"X_API_KEY": "abc"}},
    ]
    assert len(k.secret_findings(leaky)) == 3
    assert not k.secret_like_name("MDH_VAULT__ROLE")
    assert k.secret_like_name("BH_OAUTH_CLIENT_SECRET")


def test_one_dockerfile_pinned_locked_non_root_for_every_service() -> None:
    """One parametrised recipe (deploy/Dockerfile), no per-service copies to drift."""
    assert not list((k.ROOT / "services").glob("*/Dockerfile")), "one Dockerfile, in deploy/"
    text = (k.ROOT / "deploy" / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    for image in (args["PYTHON_IMAGE"], args["UV_IMAGE"]):
        tag = image.split("@")[0].rsplit(":", 1)[-1]
        assert "@sha256:" in image or re.fullmatch(r"\d+\.\d+\.\d+[\w.-]*", tag), image
    assert re.search(r"uv sync --locked --package \$\{SERVICE\} --no-dev\b", text)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 3, "multi-stage"
    (user,) = re.findall(r"^USER (\S+)$", text, re.M)
    assert int(user.split(":")[0]) >= 1000
    assert 'exec python -m \\"$RAXX_SERVICE_MODULE\\"' in text
    readme = (k.ROOT / "deploy" / "README.md").read_text()
    for service, (module, _) in k.SERVICES.items():
        assert f"--build-arg SERVICE={service} --build-arg MODULE={module}" in readme, service


def test_nats_chart_values_three_servers_jetstream_file_full_resolver() -> None:
    helm = k.ROOT / "deploy" / "helm" / "nats"
    values = yaml.safe_load((helm / "values.yaml").read_text())
    config = values["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["fileStore"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert config["resolver"]["enabled"] is True
    assert config["resolver"]["merge"]["type"] == "full"
    (release,) = yaml.safe_load((helm / "helmfile.yaml").read_text())["releases"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", release["version"]), "pin the chart version"
    assert not k.secret_findings([{"kind": "Values", "metadata": {"name": "nats"}, **values}])


def test_vault_roles_cover_every_service() -> None:
    vault = k.ROOT / "deploy" / "vault"
    script = (vault / "configure.sh").read_text()
    assert "audience=vault" in script
    for service in k.SERVICES:
        assert (vault / "policies" / f"{service}.hcl").exists()
        assert service in script


def _settings_fields(model: Any, path: list[str]) -> bool:
    """Whether a `__`-separated env path names a field of a pydantic settings model."""
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    sub = field.annotation
    return hasattr(sub, "model_fields") and _settings_fields(sub, path[1:])


def test_config_is_accepted_by_each_services_settings(
    rendered: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every configured variable is a real setting, and the service's Settings accepts them."""
    for name, d in _deployments(rendered).items():
        package, pfx = k.SERVICES[name]
        settings_cls = importlib.import_module(f"{package}.settings").Settings
        env = k.pod_env(rendered, d)
        for item in d["spec"]["template"]["spec"]["containers"][0].get("env") or []:
            if "valueFrom" in item:  # Secret or downward API: a stand-in value
                env[item["name"]] = "postgresql://placeholder@db/raxx"
        unknown = [
            key
            for key in env
            if key.startswith(f"{pfx}_")
            and not _settings_fields(settings_cls, key[len(pfx) + 1 :].lower().split("__"))
        ]
        assert not unknown, f"{name}: not settings of {package}: {unknown}"
        with monkeypatch.context() as m:
            for key in [key for key in os.environ if key.startswith(f"{pfx}_")]:
                m.delenv(key)
            for key, value in env.items():
                m.setenv(key, value)
            settings_cls()
