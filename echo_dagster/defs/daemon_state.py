"""A sensor's tick outside the daemon, evaluated and recorded the way the daemon does it.

`make demo` runs the loop's jobs itself, as no daemon runs. So that the daemon started later by
`make ui` finds nothing left to do, the demo evaluates each sensor as the daemon would: with the
cursor the instance holds for it, leaving out the run requests whose run key a run of that sensor
already has. It runs what is requested with the tags the daemon gives a sensor's runs
(`dagster/sensor_name`, `dagster/run_key`: what the daemon looks up to never launch a run key
twice), and records the tick and the sensor's new cursor where the daemon and the UI read them (the
sensor's instigator state and tick history in the instance, found by the sensor's selector:
location, repository, name). The demo's runs get the code location's origin, as launched runs have
(`adopt_run`). This is Dagster's instance storage (`dagster._core`), as the daemon uses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.definitions.sensor_definition import SensorType
from dagster._core.remote_origin import RemoteInstigatorOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG, RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.workspace.load import location_origin_from_module_name

# The code location as workspace.yaml names and loads it (`dagster dev -w workspace.yaml`); a test
# checks that the two agree.
LOCATION_NAME = "echo_dagster"
MODULE, ATTRIBUTE = "echo_dagster.definitions", "defs"


def repository_origin() -> RemoteRepositoryOrigin:
    location = location_origin_from_module_name(MODULE, ATTRIBUTE, None, LOCATION_NAME)
    return RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME)


def sensor_origin(name: str) -> RemoteInstigatorOrigin:
    return RemoteInstigatorOrigin(repository_origin(), name)


def adopt_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """Gives a run executed in this process (`execute_in_process`) the origin that a run launched by
    the webserver or the daemon has: the code location `dagster dev` loads, and its repository label
    tag. The UI then shows the run under its job (the Overview timeline, the job's *Runs*); without
    them it shows the run only under *Runs*. The same change as `dagster run migrate-repository`."""
    repository = repository_origin()
    instance.add_run_tags(run_id, {REPOSITORY_LABEL_TAG: repository.get_label()})
    run = instance.get_run_by_id(run_id)
    instance.run_storage.replace_job_origin(run, RemoteJobOrigin(repository, run.job_name))


@dataclass
class Tick:
    sensor: dg.SensorDefinition
    started: float
    requests: list[dg.RunRequest]  # new: no run of this sensor has their run key
    already_requested: list[str]  # run keys that a run of this sensor has
    skip_message: str | None
    cursor: str | None
    run_ids: list[str] = field(default_factory=list)

    @property
    def sentence(self) -> str:
        """What the tick did, for a person."""
        if self.requests:
            return f"requests {', '.join(r.run_key or '(no run key)' for r in self.requests)}"
        if self.already_requested:
            return f"nothing new: {', '.join(self.already_requested)} already requested"
        return f"skip, {self.skip_message or 'no run requested'}"

    def run_tags(self, request: dg.RunRequest) -> dict[str, str]:
        """The tags of the run the daemon would launch for `request`."""
        return {**request.tags, SENSOR_NAME_TAG: self.sensor.name} | (
            {RUN_KEY_TAG: request.run_key} if request.run_key else {})


def stored_state(instance: dg.DagsterInstance, name: str) -> InstigatorState | None:
    origin = sensor_origin(name)
    return instance.get_instigator_state(origin.get_id(), origin.get_selector().get_id())


def evaluate(instance: dg.DagsterInstance, defs: dg.Definitions, name: str) -> Tick:
    """One tick of sensor `name` with its stored cursor and the definitions' resources."""
    sensor = next(s for s in defs.sensors if s.name == name)  # as defined; the context gets the resources
    state = stored_state(instance, name)
    cursor = state.instigator_data.cursor if state and isinstance(state.instigator_data, SensorInstigatorData) \
        else None
    started = time.time()
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources, definitions=defs,
                                 sensor_name=name) as context:
        data = sensor.evaluate_tick(context)
    new, done = [], []
    for request in data.run_requests or []:
        if request.run_key and instance.get_runs(
                dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: name}), limit=1):
            done.append(request.run_key)
        else:
            new.append(request)
    return Tick(sensor, started, new, done, data.skip_message, data.cursor if data.cursor is not None else cursor)


def record(instance: dg.DagsterInstance, tick: Tick) -> None:
    """Stores the tick in the sensor's history and its cursor in the sensor's state. The state keeps
    no tick time, so a daemon started afterwards ticks at once rather than after the interval."""
    origin = sensor_origin(tick.sensor.name)
    selector_id = origin.get_selector().get_id()
    state = stored_state(instance, tick.sensor.name)
    previous = state.instigator_data if state and isinstance(state.instigator_data, SensorInstigatorData) \
        else SensorInstigatorData(last_sensor_start_timestamp=tick.started)
    data = SensorInstigatorData(
        last_run_key=tick.requests[-1].run_key if tick.requests else previous.last_run_key,
        min_interval=tick.sensor.minimum_interval_seconds, cursor=tick.cursor,
        last_sensor_start_timestamp=previous.last_sensor_start_timestamp,
        sensor_type=SensorType.ASSET if isinstance(tick.sensor, dg.AssetSensorDefinition) else SensorType.STANDARD)
    if state is None:
        instance.add_instigator_state(InstigatorState(origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE,
                                                      data))
    else:
        instance.update_instigator_state(state.with_data(data))
    instance.create_tick(TickData(
        instigator_origin_id=origin.get_id(), instigator_name=tick.sensor.name, instigator_type=InstigatorType.SENSOR,
        status=TickStatus.SUCCESS if tick.run_ids else TickStatus.SKIPPED, timestamp=tick.started,
        run_ids=tick.run_ids, run_keys=[r.run_key for r in tick.requests if r.run_key],
        skip_reason=None if tick.run_ids else tick.sentence, cursor=tick.cursor, selector_id=selector_id,
        end_timestamp=time.time()))
