# eod-settler: read its market-data-hub service client (it calls Alpaca REST only through the
# hub's /alpaca passthrough; it never holds the Alpaca key) and its NATS user.
path "secret/data/raxx/eod-settler/hub-client" { capabilities = ["read"] }
path "secret/metadata/raxx/eod-settler/hub-client" { capabilities = ["read"] }
path "secret/data/raxx/nats/services/settler" { capabilities = ["read"] }
