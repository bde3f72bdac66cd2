"""A sensor's tick outside the daemon, for `make demo`, which runs the loop's jobs itself.

So that the daemon started later by `make ui` finds nothing left to do, the demo evaluates each
sensor as the daemon would and gives the runs it starts the tags the daemon gives a sensor's runs:
`dagster/sensor_name` and `dagster/run_key`, the pair the daemon looks up to never launch a run key
of a sensor twice. A request whose run key a run of that sensor already has is left out here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

SENSOR_NAME_TAG, RUN_KEY_TAG = "dagster/sensor_name", "dagster/run_key"


@dataclass
class Tick:
    sensor: str
    requests: list[dg.RunRequest]  # new: no run of this sensor has their run key
    already_requested: list[str]  # run keys that a run of this sensor has
    skip_message: str | None

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
        return {**request.tags, SENSOR_NAME_TAG: self.sensor} | ({RUN_KEY_TAG: request.run_key}
                                                                 if request.run_key else {})


def evaluate(instance: dg.DagsterInstance, defs: dg.Definitions, name: str) -> Tick:
    """One tick of sensor `name` with the definitions' resources."""
    sensor = next(s for s in defs.sensors if s.name == name)
    with dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs,
                                 sensor_name=name) as context:
        data = sensor.evaluate_tick(context)
    new, done = [], []
    for request in data.run_requests or []:
        if request.run_key and instance.get_runs(
                dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: name}), limit=1):
            done.append(request.run_key)
        else:
            new.append(request)
    return Tick(name, new, done, data.skip_message)
