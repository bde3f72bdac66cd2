import os

import dagster as dg

# Shared by the harvest assets, their job and schedule. UTC days, as the landing folders are.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("ECHO_START_DATE", "2026-01-01"), timezone="UTC"
)
