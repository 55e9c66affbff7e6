"""Writing a Temporal schedule by id: the one create-or-update every cairn schedule goes through.

Policy schedules (``schedules/backup_policy.py``, ``schedules/drill_policy.py``) and the
worker's system schedules (``worker/system_schedules.py``) all write through here, so a
schedule that already exists is replaced the same way everywhere.
"""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleAlreadyRunningError,
    ScheduleUpdate,
    ScheduleUpdateInput,
)


async def create_or_update(client: Client, schedule_id: str, schedule: Schedule) -> bool:
    """Creates the schedule, or replaces the one of that id; True when it replaced one.

    A replaced schedule keeps its paused flag as it was (Temporal's update does not touch
    it); a caller that owns the flag sets it afterwards.
    """
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
        return True
    return False
