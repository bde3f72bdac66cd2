"""Whose refinements train which model: each tenant's policy, chosen by the customer.

* `pooled` — its rows train the shared model, which serves every pooled tenant (the default);
* `own` — its rows train a model of its own, evaluated on its own held-out rows, promoted to its own
  champion and served only to its tokens (the base model until it has one);
* `excluded` — served the shared model, never trained or evaluated on.

The file (`$ECHO_TENANT_POLICY`, default `$ECHO_HOME/tenant_policy.json`):

    {"default": "pooled", "tenants": {"acme": "own", "initech": "excluded"}}

It is read again when it changes, by the server and the pipeline alike; a file that cannot be read
stops both (training on a tenant that chose `own` or `excluded` cannot be undone).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from echo_dagster.watched import FileProblem, WatchedFile

POLICIES = ("pooled", "own", "excluded")
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


class PolicyError(FileProblem):
    pass


@dataclass(frozen=True)
class TenantPolicy:
    default: str = "pooled"
    tenants: dict[str, str] = field(default_factory=dict)

    def of(self, tenant: str) -> str:
        return self.tenants.get(tenant, self.default)

    def own_tenants(self) -> list[str]:
        return sorted(t for t, p in self.tenants.items() if p == "own")

    def table(self) -> list[tuple[str, str]]:
        return [("(default)", self.default), *sorted(self.tenants.items())]


def load(path: str | Path) -> TenantPolicy:
    path = Path(path)
    if not path.is_file():
        return TenantPolicy()
    expected = f'expected {{"default": "pooled", "tenants": {{"<tenant id>": "{"|".join(POLICIES)}"}}}}'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:
        raise PolicyError(f"{path}: not JSON ({err}); {expected}", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("tenants", {}), dict):
        raise PolicyError(f"{path}: {expected}", path)
    default, tenants = data.get("default", "pooled"), data.get("tenants", {})
    for who, policy in [("default", default), *tenants.items()]:
        if policy not in POLICIES:
            raise PolicyError(f"{path}: {who}: policy {policy!r}; {expected}", path)
    for tenant in tenants:
        check_tenant_id(tenant)

    return TenantPolicy(default, dict(tenants))


def check_tenant_id(tenant: str) -> None:
    """A tenant id names a folder of the registry (`tenants/<id>/`) and a checkpoint; "pooled" names
    the shared model."""
    if not TENANT_ID.fullmatch(tenant) or tenant == "pooled":
        raise PolicyError(f"tenant id {tenant!r}: expected letters, digits, '.', '_', '@' or '-' (not 'pooled'), "
                          "starting with a letter or digit")


def watch(path: str | Path) -> WatchedFile[TenantPolicy]:
    return WatchedFile(path, load, (PolicyError,))


def set_policy(path: str | Path, tenant: str, policy: str) -> TenantPolicy:
    """Writes one tenant's policy (`tenant` "*" sets the default); the new policy."""
    if policy not in POLICIES:
        raise PolicyError(f"policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if tenant != "*":
        check_tenant_id(tenant)
    current = load(path)
    updated = TenantPolicy(policy, current.tenants) if tenant == "*" else \
        TenantPolicy(current.default, {**current.tenants, tenant: policy})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"default": updated.default, "tenants": dict(sorted(updated.tenants.items()))},
                              indent=2) + "\n")
    os.replace(tmp, path)
    return updated
