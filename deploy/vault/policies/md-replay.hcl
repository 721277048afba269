# md-replay: read its NATS user (External Secrets renders it into the pod); nothing else.
path "secret/data/raxx/nats/services/md-replay" { capabilities = ["read"] }
