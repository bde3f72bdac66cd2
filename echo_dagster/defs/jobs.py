import dagster as dg

harvest_job = dg.define_asset_job(
    "harvest_job",
    selection=dg.AssetSelection.groups("harvest"),
    description="Ingest, harvest and filter one day of experience (daily partitions).",
)
