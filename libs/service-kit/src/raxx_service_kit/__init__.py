"""raxx_service_kit: the plumbing every Raxx service needs, written once."""
