# tier-gate: its signing material and HTTP-token key (created once if absent), and its two
# NATS users (MD account for BILLING, SYS account for revocation pushes). Never the operator
# identity seed or the account seeds: `tier_gate init` runs with an admin token.
path "secret/data/raxx/tier-gate/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/raxx/tier-gate/*" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/tier-gate" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/tier-gate-sys" { capabilities = ["read"] }
