import dagster as dg

from echo_dagster.defs.partitions import daily_partitions

harvest_job = dg.define_asset_job(
    "harvest_job",
    selection=dg.AssetSelection.groups("harvest"),
    partitions_def=daily_partitions,
    description="Ingest, harvest and filter one day of experience.",
)
