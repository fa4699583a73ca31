"""In-memory ground truth of the ClinikAPI sandbox.

One dataset per environment (``live`` / ``test``, from the key prefix) and tenant, as §2 of the
contract requires. Each dataset keeps two views of every resource kind:

* ``live`` -- what read-by-id sees, immediately consistent after every write (§6);
* a search index -- per resource id, a list of versions each visible from a clock instant on.
  A write made at ``t`` with lag ``L`` becomes searchable at ``t + L``; until then searches see
  the previous version (or nothing for a create, or the old row for a delete).

The store also keeps the request log and the write log that tests use as ground truth (how many
``POST /v1/labs`` really created a lab, when each call arrived). It never sees an API key.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Resource = dict[str, Any]
WriteAction = Literal["create", "update", "delete"]

KINDS: tuple[str, ...] = (
    "labs",
    "patients",
    "encounters",
    "observations",
    "practitioners",
    "specimens",
)
ID_PREFIXES: Mapping[str, str] = {
    "labs": "lab",
    "patients": "pt",
    "encounters": "enc",
    "observations": "obs",
    "practitioners": "prac",
    "specimens": "spec",
}
SeedData = Mapping[str, list[Resource]]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the sandbox received (control routes excluded); headers without the key."""

    request_id: str
    method: str
    path: str
    query: str
    at: float
    timestamp: str
    status: int | None
    environment: str | None = None
    tenant: str | None = None
    fault: str | None = None
    resource_id: str | None = None
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "at": self.at,
            "timestamp": self.timestamp,
            "status": self.status,
            "environment": self.environment,
            "tenant": self.tenant,
            "fault": self.fault,
            "resourceId": self.resource_id,
            "body": self.body,
            "headers": dict(self.headers),
        }


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One change to a dataset, made by a request (seeding is not recorded)."""

    request_id: str
    action: WriteAction
    kind: str
    resource_id: str
    environment: str
    tenant: str
    at: float
    timestamp: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "action": self.action,
            "kind": self.kind,
            "resourceId": self.resource_id,
            "environment": self.environment,
            "tenant": self.tenant,
            "at": self.at,
            "timestamp": self.timestamp,
        }


@dataclass(slots=True)
class _Version:
    visible_from: float
    resource: Resource | None


@dataclass(slots=True)
class _Dataset:
    live: dict[str, dict[str, Resource]] = field(default_factory=dict)
    index: dict[str, dict[str, list[_Version]]] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in KINDS:
            self.live.setdefault(kind, {})
            self.index.setdefault(kind, {})


class Store:
    """Thread-safe datasets keyed by (environment, tenant), plus the request and write logs."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        seed: Callable[[], SeedData] | None = None,
    ) -> None:
        self._clock = clock
        self._seed = seed
        self._lock = threading.RLock()
        self._datasets: dict[tuple[str, str], _Dataset] = {}
        self._requests: list[RequestRecord] = []
        self._writes: list[WriteRecord] = []
        self._sequence = 0

    # -- configuration ------------------------------------------------------------------------

    def set_clock(self, clock: Callable[[], float]) -> None:
        with self._lock:
            self._clock = clock

    def reset(self, *, seed: Callable[[], SeedData] | None | Literal["keep"] = "keep") -> None:
        """Forget every dataset and log; datasets are re-seeded lazily on next use."""
        with self._lock:
            if seed != "keep":
                self._seed = seed
            self._datasets.clear()
            self._requests.clear()
            self._writes.clear()

    # -- writes -------------------------------------------------------------------------------

    def insert(
        self,
        kind: str,
        environment: str,
        tenant: str,
        resource: Resource,
        *,
        lag: float,
        request_id: str,
        timestamp: str,
    ) -> Resource:
        with self._lock:
            dataset = self._dataset(environment, tenant)
            resource_id = resource["id"]
            dataset.live[kind][resource_id] = copy.deepcopy(resource)
            self._sequence += 1
            dataset.order[resource_id] = self._sequence
            self._index(dataset, kind, resource_id, resource, lag)
            self._log_write("create", kind, resource_id, environment, tenant, request_id, timestamp)
            return copy.deepcopy(resource)

    def replace(
        self,
        kind: str,
        environment: str,
        tenant: str,
        resource: Resource,
        *,
        lag: float,
        request_id: str,
        timestamp: str,
    ) -> Resource:
        with self._lock:
            dataset = self._dataset(environment, tenant)
            resource_id = resource["id"]
            dataset.live[kind][resource_id] = copy.deepcopy(resource)
            self._index(dataset, kind, resource_id, resource, lag)
            self._log_write("update", kind, resource_id, environment, tenant, request_id, timestamp)
            return copy.deepcopy(resource)

    def delete(
        self,
        kind: str,
        environment: str,
        tenant: str,
        resource_id: str,
        *,
        lag: float,
        request_id: str,
        timestamp: str,
    ) -> bool:
        with self._lock:
            dataset = self._dataset(environment, tenant)
            if dataset.live[kind].pop(resource_id, None) is None:
                return False
            self._index(dataset, kind, resource_id, None, lag)
            self._log_write("delete", kind, resource_id, environment, tenant, request_id, timestamp)
            return True

    def ids_in_use(self, kind: str, environment: str, tenant: str) -> set[str]:
        with self._lock:
            dataset = self._dataset(environment, tenant)
            return set(dataset.live[kind]) | set(dataset.index[kind])

    # -- reads --------------------------------------------------------------------------------

    def get(self, kind: str, environment: str, tenant: str, resource_id: str) -> Resource | None:
        """Read by id: immediately consistent."""
        with self._lock:
            found = self._dataset(environment, tenant).live[kind].get(resource_id)
            return copy.deepcopy(found) if found is not None else None

    def searchable(
        self,
        kind: str,
        environment: str,
        tenant: str,
        keep: Callable[[Resource], bool] | None = None,
        *,
        copies: bool = True,
    ) -> list[Resource]:
        """What the (lagging) search index holds now and ``keep`` accepts, newest first.

        ``copies=False`` hands out the stored objects themselves, for callers that only read
        them (the search route serialises one page); they must not be changed.
        """
        with self._lock:
            dataset = self._dataset(environment, tenant)
            now = self._clock()
            visible: list[tuple[str, int, Resource]] = []
            for resource_id, versions in list(dataset.index[kind].items()):
                current = _prune(versions, now)
                if current is None:
                    if not versions:
                        del dataset.index[kind][resource_id]
                    continue
                if keep is not None and not keep(current):
                    continue
                created = str(current.get("createdAt", ""))
                visible.append((created, dataset.order.get(resource_id, 0), current))
            visible.sort(key=lambda row: (row[0], row[1]), reverse=True)
            rows = [row[2] for row in visible]
            return copy.deepcopy(rows) if copies else rows

    # -- ground truth for tests ---------------------------------------------------------------

    def resources(
        self, kind: str, *, env: str = "test", tenant: str = "org_sandbox"
    ) -> list[Resource]:
        """Every stored resource of a kind (read-consistent, seeded ones included)."""
        with self._lock:
            dataset = self._dataset(env, tenant)
            rows = sorted(
                dataset.live[kind].values(),
                key=lambda r: dataset.order.get(r["id"], 0),
            )
            return copy.deepcopy(rows)

    def labs(self, *, env: str = "test", tenant: str = "org_sandbox") -> list[Resource]:
        return self.resources("labs", env=env, tenant=tenant)

    def datasets(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._datasets)

    def counts(self, environment: str, tenant: str) -> dict[str, int]:
        with self._lock:
            dataset = self._dataset(environment, tenant)
            return {kind: len(dataset.live[kind]) for kind in KINDS}

    def log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def writes(self) -> list[WriteRecord]:
        with self._lock:
            return list(self._writes)

    def created(
        self, kind: str = "labs", *, env: str | None = None, tenant: str | None = None
    ) -> list[WriteRecord]:
        """The creates made through the API (never the seed), optionally for one dataset."""
        return [
            w
            for w in self.writes
            if w.action == "create"
            and w.kind == kind
            and (env is None or w.environment == env)
            and (tenant is None or w.tenant == tenant)
        ]

    # -- internals ----------------------------------------------------------------------------

    def _dataset(self, environment: str, tenant: str) -> _Dataset:
        key = (environment, tenant)
        dataset = self._datasets.get(key)
        if dataset is None:
            dataset = _Dataset()
            if self._seed is not None:
                self._load_seed(dataset, self._seed())
            self._datasets[key] = dataset
        return dataset

    def _load_seed(self, dataset: _Dataset, seed: SeedData) -> None:
        # The seed callable hands over fresh objects. Stored objects are never changed in place
        # (writes store copies, reads return copies), so live and index can share them.
        for kind, rows in seed.items():
            for resource in rows:
                dataset.live[kind][resource["id"]] = resource
                self._sequence += 1
                dataset.order[resource["id"]] = self._sequence
                # Seed data has always been indexed.
                dataset.index[kind][resource["id"]] = [_Version(float("-inf"), resource)]

    def _index(
        self,
        dataset: _Dataset,
        kind: str,
        resource_id: str,
        resource: Resource | None,
        lag: float,
    ) -> None:
        versions = dataset.index[kind].setdefault(resource_id, [])
        snapshot = copy.deepcopy(resource) if resource is not None else None
        versions.append(_Version(self._clock() + max(lag, 0.0), snapshot))

    def _log_write(
        self,
        action: WriteAction,
        kind: str,
        resource_id: str,
        environment: str,
        tenant: str,
        request_id: str,
        timestamp: str,
    ) -> None:
        self._writes.append(
            WriteRecord(
                request_id=request_id,
                action=action,
                kind=kind,
                resource_id=resource_id,
                environment=environment,
                tenant=tenant,
                at=self._clock(),
                timestamp=timestamp,
            )
        )


def _prune(versions: list[_Version], now: float) -> Resource | None:
    """Drop versions superseded before ``now``; return the one searchable now, if any."""
    latest = -1
    for position, version in enumerate(versions):
        if version.visible_from <= now:
            latest = position
    if latest < 0:
        return None
    del versions[:latest]
    current = versions[0].resource
    if current is None and len(versions) == 1:
        versions.clear()
    return current
