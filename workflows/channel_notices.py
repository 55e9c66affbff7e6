"""Tells a workspace's notification channels about one event, apart from the run it reports.

Started by the step that noticed the event (the failure alert, a backup's success after a
failure, the overdue notices) with an id of its own per notice, so a retried step never tells
a channel twice and the run never waits for a channel. Each channel is sent to on its own,
retried with backoff for up to 12 hours; every attempt's outcome is recorded on the channel.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.channels import CHANNEL_NOTICES_WORKFLOW, ChannelNotice, ChannelSend
    from workflows import steps
    from workflows.failures import reason
    from workflows.step_kinds import CONTROL

# 30 s, 1, 2, 4 ... minutes, then hourly: a channel away for an afternoon still hears of it
CHANNEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
    non_retryable_error_types=["ChannelUnusable"],
)
CHANNEL_BUDGET = timedelta(hours=12)
CHANNEL_SEND_STEP = timedelta(minutes=2)


@workflow.defn(name=CHANNEL_NOTICES_WORKFLOW)
class ChannelNoticesWorkflow:
    @workflow.run
    async def run(self, notice: ChannelNotice) -> list[str]:
        """What each channel made of it: ``delivered``, ``skipped`` or ``failed: why``."""
        channels = await steps.channels_for_notice(notice, **CONTROL)
        outcomes = await asyncio.gather(*(self._send(c, notice) for c in channels))
        return list(outcomes)

    async def _send(self, channel_id: str, notice: ChannelNotice) -> str:
        try:
            return await steps.send_channel_notice(
                ChannelSend(channel_id, notice),
                start_to_close_timeout=CHANNEL_SEND_STEP,
                schedule_to_close_timeout=CHANNEL_BUDGET,
                retry_policy=CHANNEL_RETRY,
            )
        except ActivityError as error:
            message = reason(error)
            workflow.logger.error("notice to channel %s not delivered: %s", channel_id, message)
            return f"failed: {message}"
