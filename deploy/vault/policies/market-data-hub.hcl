# market-data-hub: read the Alpaca market-data key (re-read on rotation) and its NATS user.
path "secret/data/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/metadata/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/hub" { capabilities = ["read"] }
