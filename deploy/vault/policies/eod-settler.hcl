# eod-settler: read the Alpaca market-data key (calendar, daily bars) and its NATS user.
path "secret/data/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/metadata/raxx/alpaca/market-data" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/settler" { capabilities = ["read"] }
