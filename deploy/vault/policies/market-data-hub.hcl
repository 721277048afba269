# market-data-hub: read the Alpaca market-data key (re-read on rotation), the service clients
# allowed to use its /alpaca passthrough (client id -> sha256 of the secret) and its NATS user.
path "secret/data/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/metadata/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/data/raxx/market-data-hub/service-clients" { capabilities = ["read"] }
path "secret/metadata/raxx/market-data-hub/service-clients" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/hub" { capabilities = ["read"] }
