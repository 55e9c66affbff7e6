"""The Kubernetes platform: cairn's adapter to applications that run in a cluster."""
