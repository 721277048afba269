#!/usr/bin/env bash
# Vault/OpenBao configuration for the market-data services: Kubernetes auth, one policy and
# one role per service, bound to the service's ServiceAccount in NAMESPACE and to the
# audience "vault" of the projected tokens the pods mount. Run with an admin token:
#   VAULT_ADDR=... VAULT_TOKEN=... NAMESPACE=raxx-md deploy/vault/configure.sh
# Idempotent. Uses `vault` (or BAO=bao for the OpenBao CLI).
set -euo pipefail
cd "$(dirname "$0")"
CLI=${BAO:-vault}
NAMESPACE=${NAMESPACE:?set NAMESPACE (raxx-md or raxx-md-dev)}
AUTH_PATH=${AUTH_PATH:-kubernetes}

$CLI secrets list -format=json | grep -q '"secret/"' || $CLI secrets enable -path=secret -version=2 kv
$CLI auth list -format=json | grep -q "\"${AUTH_PATH}/\"" || $CLI auth enable -path="$AUTH_PATH" kubernetes
# Vault runs in the cluster: it reviews tokens with its own ServiceAccount.
$CLI write "auth/${AUTH_PATH}/config" kubernetes_host="https://kubernetes.default.svc"

for svc in market-data-hub tier-gate broker-handoff eod-settler md-replay; do
  $CLI policy write "raxx-${svc}" "policies/${svc}.hcl"
  $CLI write "auth/${AUTH_PATH}/role/${svc}" \
    bound_service_account_names="$svc" \
    bound_service_account_namespaces="$NAMESPACE" \
    audience=vault \
    token_policies="raxx-${svc}" \
    token_ttl=1h token_max_ttl=4h
done
