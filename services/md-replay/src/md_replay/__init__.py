"""md_replay: session archive (Parquet) and replay to one requester."""
