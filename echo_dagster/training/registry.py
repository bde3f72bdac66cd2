"""The model registry: checkpoints under a root (a local folder or an S3 prefix), and the pointer to
the champion, the model that serves.

    <root>/<name>/echo_meta.json     what it was trained on, how, and how it did
    <root>/<name>/adapter/           the LoRA adapter (plain peft loads it)
    <root>/<name>/merged/            the merged model and tokenizer (plain transformers loads it)
    <root>/champion.json             {"name", "set_at", "reason", "previous"}
    <root>/tenants/<id>/champion.json  the same, for a tenant whose policy is `own` (`tenancy`)
    <root>/decisions/<at>-<name>.json  every promotion decision, with its figures and reasons
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from echo_dagster.landing import default_s3_client, parse_s3_url


class MalformedPointer(ValueError):
    """A champion pointer that names no checkpoint."""


class Registry:
    def __init__(self, root: str | Path | None = None, *, s3_client=None, bucket: str = "", prefix: str = "",
                 cache_dir: str | Path | None = None):
        """A local registry (`root`) or an S3 one (`s3_client`, `bucket`, `prefix`; checkpoints are
        downloaded into `cache_dir` to be loaded)."""
        self.root = Path(root) if root is not None else None
        self.s3, self.bucket, self.prefix = s3_client, bucket, prefix.strip("/")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    @classmethod
    def at(cls, url: str, cache_dir: str | Path, s3_client=None) -> "Registry":
        """The registry at a folder or `s3://bucket/prefix` (`s3_client`: default, boto3's chain with
        `ECHO_S3_ENDPOINT_URL`)."""
        if not url.startswith("s3://"):
            return cls(url)
        bucket, prefix = parse_s3_url(url)
        return cls(s3_client=s3_client or default_s3_client(), bucket=bucket, prefix=prefix, cache_dir=cache_dir)

    # -- checkpoints

    def publish(self, folder: str | Path, name: str) -> str:
        """Copies a checkpoint folder (holding echo_meta.json) in under `name`; its address."""
        folder = Path(folder)
        if not (folder / "echo_meta.json").is_file():
            raise ValueError(f"{folder} holds no echo_meta.json: not a checkpoint")
        if self.s3 is None:
            target = self.root / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(folder, target)
            return str(target)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.s3.upload_file(str(path), self.bucket, self._key(name, path.relative_to(folder).as_posix()))
        return f"s3://{self.bucket}/{self._key(name)}"

    def names(self) -> list[str]:
        if self.s3 is None:
            return sorted(p.parent.name for p in self.root.glob("*/echo_meta.json")) if self.root.is_dir() else []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(""))
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return sorted({k.split("/")[-2] for k in keys if k.endswith("/echo_meta.json")})

    def meta(self, name: str) -> dict:
        return json.loads(self._read(f"{name}/echo_meta.json"))

    def latest(self, kind: str = "echo", tenant: str | None = None) -> dict | None:
        """The meta of the checkpoint of this kind (`echo`, `repository`) trained last: of the pooled
        model, or of `tenant`'s own."""
        metas = [m for m in map(self.meta, self.names()) if m.get("kind", "echo") == kind and m.get("tenant") == tenant]
        return max(metas, key=lambda m: m["created_at"]) if metas else None

    def local(self, name: str) -> Path:
        """A local folder holding the checkpoint (downloaded once from S3)."""
        if self.s3 is None:
            folder = self.root / name
            if not (folder / "echo_meta.json").is_file():
                raise ValueError(f"no checkpoint {name!r} in {self.root}")
            return folder
        folder = self.cache_dir / name
        if not (folder / "echo_meta.json").is_file():
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(name, ""))
            for obj in (o for page in pages for o in page.get("Contents", [])):
                path = folder / obj["Key"][len(self._key(name, "")) :]
                path.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(self.bucket, obj["Key"], str(path))
        return folder

    def mark(self, name: str, mark: dict) -> None:
        """Flags a checkpoint — trained on data since purged, say — beside it; a marked checkpoint
        is never made champion."""
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._write(f"{name}/echo_marks.json", json.dumps(self.marks(name) + [{"marked_at": at, **mark}], indent=2))

    def marks(self, name: str) -> list[dict]:
        try:
            return json.loads(self._read(f"{name}/echo_marks.json"))
        except FileNotFoundError:
            return []

    # -- the champion

    def champion(self, tenant: str | None = None) -> str | None:
        """The shared champion, or a tenant's own (None: there is none yet); MalformedPointer where the
        pointer holds no checkpoint's name (cut short, edited by hand)."""
        try:
            text = self._read(_pointer(tenant))
        except FileNotFoundError:
            return None
        try:
            name = json.loads(text)["name"]
        except (ValueError, TypeError, KeyError, RecursionError) as err:
            name = err
        if not isinstance(name, str) or not name:
            raise MalformedPointer(f"the champion pointer {_pointer(tenant)} holds no checkpoint name "
                                   f"({type(name).__name__}: {str(name)[:80]}); a promotion replaces it")
        return name

    def set_champion(self, name: str, reason: str, tenant: str | None = None) -> None:
        if name not in self.names():
            raise ValueError(f"no checkpoint {name!r} to make champion")
        if self.marks(name):
            raise ValueError(f"{name} is marked ({self.marks(name)[-1]['reason']}): it cannot be champion")
        trained_for = self.meta(name).get("tenant")
        if trained_for != tenant:
            raise ValueError(f"{name} was trained for {_scope(trained_for)}: it cannot be champion for {_scope(tenant)}")
        try:
            previous = self.champion(tenant)
        except MalformedPointer:
            previous = None  # the promotion is what mends it
        pointer = {"name": name, "set_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reason": reason,
                   "previous": previous}
        self._write(_pointer(tenant), json.dumps(pointer, indent=2))

    def record_decision(self, decision: dict) -> str:
        """Keeps a promotion decision (it names its `challenger`); its path under the root."""
        at = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")  # two decisions never share a name
        relative = f"decisions/{at}-{decision['challenger']}.json"
        self._write(relative, json.dumps({"decided_at": at, **decision}, indent=2))
        return relative

    # -- storage

    def _key(self, *parts: str) -> str:
        """The S3 key of a path under the root; a last part "" makes it a folder's prefix."""
        return "/".join(([self.prefix] if self.prefix else []) + list(parts))

    def _read(self, relative: str) -> str:
        if self.s3 is None:
            return (self.root / relative).read_text()
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(relative))["Body"].read().decode()
        except self.s3.exceptions.NoSuchKey as missing:
            raise FileNotFoundError(relative) from missing

    def _write(self, relative: str, text: str) -> None:
        if self.s3 is None:
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)  # a reader sees the old pointer or the new one
        else:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(relative), Body=text.encode())


def _pointer(tenant: str | None) -> str:
    if tenant is not None and (not tenant or "/" in tenant or tenant.startswith(".")):
        raise ValueError(f"tenant id {tenant!r} cannot name a folder")
    return "champion.json" if tenant is None else f"tenants/{tenant}/champion.json"


def _scope(tenant: str | None) -> str:
    return "the pooled model" if tenant is None else f"tenant {tenant!r} alone"
