"""One Parquet file per table and day: `<root>/<table>/<YYYY-MM-DD>.parquet`, a local folder (a
shared volume) or `s3://bucket/prefix`.

A file is replaced whole and at once (a rename; an S3 put), so a reader sees a partition before or
after a write, never half of one, and writers of different days never wait for each other. Readers
of an S3 root work from a local copy of each table's files, refreshed from the listing.
"""

from __future__ import annotations

import os
import shutil
from datetime import date, datetime
from pathlib import Path

from echo_dagster.landing import default_s3_client, folder_day, parse_s3_url


class PartitionFiles:
    def __init__(self, url: str, cache_dir: str | Path):
        self.url = url
        if url.startswith("s3://"):
            self.bucket, prefix = parse_s3_url(url)
            self.prefix = prefix.strip("/")
            self.s3 = default_s3_client()
            self.local = Path(cache_dir) / self.bucket / self.prefix
        else:
            self.s3 = None
            self.local = Path(url)

    def _key(self, table: str, day: date | None = None) -> str:
        parts = [self.prefix] if self.prefix else []
        return "/".join(parts + [table, f"{day.isoformat()}.parquet" if day else ""])

    def files(self, table: str, wanted=lambda day: True) -> dict[date, Path]:
        """Local paths of the table's partitions whose day is `wanted` (on S3: downloaded where
        new or changed)."""
        folder = self.local / table
        if self.s3 is not None:
            self._sync(table, folder, wanted)
        if not folder.is_dir():
            return {}
        found = {}
        for path in folder.glob("*.parquet"):
            day = _day(path.name)
            if day is not None and wanted(day):
                found[day] = path
        return dict(sorted(found.items()))

    def publish(self, table: str, day: date, written: Path) -> None:
        if self.s3 is not None:
            self.s3.upload_file(str(written), self.bucket, self._key(table, day))
        target = self.local / table / f"{day.isoformat()}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(written, tmp)
        os.replace(tmp, target)

    def remove(self, table: str, day: date) -> None:
        if self.s3 is not None:
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(table, day))
        (self.local / table / f"{day.isoformat()}.parquet").unlink(missing_ok=True)

    def _sync(self, table: str, folder: Path, wanted) -> None:
        remote = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(table))
        for obj in (o for page in pages for o in page.get("Contents", [])):
            name = obj["Key"].rsplit("/", 1)[-1]
            if _day(name) is not None:
                remote[name] = obj
        folder.mkdir(parents=True, exist_ok=True)
        for path in folder.glob("*.parquet"):
            if path.name not in remote:
                path.unlink()
        for name, obj in remote.items():
            if not wanted(_day(name)):
                continue
            path = folder / name
            stamp = obj["LastModified"].timestamp()
            if path.is_file() and path.stat().st_size == obj["Size"] and path.stat().st_mtime >= stamp:
                continue
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            self.s3.download_file(self.bucket, obj["Key"], str(tmp))
            os.utime(tmp, (stamp, max(stamp, datetime.now().timestamp())))
            os.replace(tmp, path)


def _day(name: str) -> date | None:
    return folder_day(name.removesuffix(".parquet")) if name.endswith(".parquet") else None
