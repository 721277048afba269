# market-data-hub: read the Alpaca market-data key (re-read on rotation), the service clients
# allowed to use its /alpaca passthrough (client id -> sha256 of the secret) and its two NATS
# users (hub: data and state; hub-responder: answers user requests, publishes only to inboxes).
path "secret/data/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/metadata/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/data/raxx/market-data-hub/service-clients" { capabilities = ["read"] }
path "secret/metadata/raxx/market-data-hub/service-clients" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/hub" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/hub-responder" { capabilities = ["read"] }
