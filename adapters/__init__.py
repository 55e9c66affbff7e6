"""Adapters to the systems cairn drives: Proxmox VE, Kubernetes, restic, database dumps."""
