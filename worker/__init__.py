"""The worker process: serves cairn's task queues."""
