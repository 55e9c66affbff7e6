"""Where each sealed secret belongs: the associated data that binds a ciphertext to its place.

A secret opens only with the very context it was sealed with, so sealing and opening must
spell it the same way; this module is the only place that spells it. Changing a string here
makes every secret already sealed with it unreadable.
"""

from __future__ import annotations

import uuid

ID = uuid.UUID | str


def application_secrets(application_id: ID) -> str:
    """``applications.platform_secrets``: the application's database password and the like."""
    return f"applications/{application_id}/platform_secrets"


def storage_secrets(storage_id: ID) -> str:
    """``backup_storages.connection_secrets``: e.g. a Ceph keyring."""
    return f"backup_storages/{storage_id}/connection_secrets"


def restore_target_password(restore_id: ID) -> str:
    """``backup_restores.target_password``: a platform admin's other restore target."""
    return f"backup_restores/{restore_id}/target_password"


def repository_password(application_id: ID, storage_id: ID) -> str:
    """``backup_repositories.password``: the restic repository's password."""
    return f"backup_repositories/{application_id}/{storage_id}/password"


def key_file_password(relative: str) -> str:
    """The password sealed in the storage's ``cairn-repository.json``, bound to where it lies
    in the storage (not the mount point, which may differ on the installation that imports it)."""
    return f"storage/{relative}/password"


def offsite_credentials(target_id: ID) -> str:
    """``offsite_targets.credentials_sealed``: the everyday (append-only) credentials."""
    return f"offsite_targets/{target_id}/credentials"


def offsite_maintenance(target_id: ID) -> str:
    """``offsite_targets.maintenance_sealed``: the credentials only offsite retention uses."""
    return f"offsite_targets/{target_id}/maintenance"


def offsite_repository_password(application_id: ID, target_id: ID) -> str:
    """``offsite_repositories.password_sealed``: the application's repository at a target."""
    return f"offsite_repositories/{application_id}/{target_id}/password"


def notification_secret(channel_id: ID) -> str:
    """``notification_channels.secret_sealed``: HMAC key, Slack URL or SMTP password."""
    return f"notification_channels/{channel_id}/secret"
