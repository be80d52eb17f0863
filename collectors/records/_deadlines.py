"""Reporting deadlines for serious incidents, per EU AI Act Art. 73.

Art. 73(2): not later than 15 days after the provider (or deployer) becomes aware;
73(3): 2 days for a widespread infringement or a serious and irreversible disruption of
critical infrastructure (Art. 3(49)(b)); 73(4): 10 days in the event of a death.
Awareness is taken as the moment aimsguard opened the record (its first sighting).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

__all__ = ["IncidentCategory", "report_deadline"]


class IncidentCategory(str, enum.Enum):
    DEATH = "death"
    WIDESPREAD = "widespread"
    CRITICAL_INFRASTRUCTURE = "critical_infrastructure"
    OTHER = "other"


_DAYS = {
    IncidentCategory.DEATH: 10,
    IncidentCategory.WIDESPREAD: 2,
    IncidentCategory.CRITICAL_INFRASTRUCTURE: 2,
    IncidentCategory.OTHER: 15,
}


def report_deadline(aware_at: datetime, category: IncidentCategory | str | None) -> datetime:
    """The latest time to report a serious incident to the market surveillance authority."""
    return aware_at + timedelta(days=_DAYS[IncidentCategory(category or IncidentCategory.OTHER)])
