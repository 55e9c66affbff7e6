"""The domain operations the API and the activities share: runs, restores, storages, policies."""
