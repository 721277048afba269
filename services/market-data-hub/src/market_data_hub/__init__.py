"""market-data-hub: the only holder of the Alpaca market-data key; fans data out over NATS."""
