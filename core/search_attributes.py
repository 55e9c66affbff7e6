"""Search attributes set on every backup and restore run, so operators can filter in the UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

WORKSPACE_ID = SearchAttributeKey.for_keyword("WorkspaceId")
APPLICATION_ID = SearchAttributeKey.for_keyword("ApplicationId")
BACKUP_TRIGGER = SearchAttributeKey.for_keyword("BackupTrigger")

SEARCH_ATTRIBUTE_KEYS = (WORKSPACE_ID, APPLICATION_ID, BACKUP_TRIGGER)


def for_run(workspace_id: object, application_id: object, trigger: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(WORKSPACE_ID, str(workspace_id)),
            SearchAttributePair(APPLICATION_ID, str(application_id)),
            SearchAttributePair(BACKUP_TRIGGER, trigger),
        ]
    )
