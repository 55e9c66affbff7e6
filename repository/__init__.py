"""The restic repository of each application: where it lives and its sealed password."""
