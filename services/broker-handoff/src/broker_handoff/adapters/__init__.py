"""One module per external system: Vault, PostgreSQL, NATS, Alpaca."""
