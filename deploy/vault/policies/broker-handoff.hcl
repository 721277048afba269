# broker-handoff: per-user Alpaca tokens and its OAuth client/admin material, all below its
# own prefix (same as broker_handoff.adapters.vault_admin.policy_text), and its NATS user.
path "secret/data/raxx/broker-handoff/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/raxx/broker-handoff/*" { capabilities = ["read", "list", "delete"] }
path "secret/destroy/raxx/broker-handoff/*" { capabilities = ["update"] }
path "secret/data/raxx/nats/services/broker-handoff" { capabilities = ["read"] }
