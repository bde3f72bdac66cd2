"""What the Dagster UI's Launchpad does with a job's default run config, for the tests.

The webserver answers `runConfigSchemaOrError { rootDefaultYaml }` (PyYAML, YAML 1.1). The job
Launchpad shows that text as it is; the asset Launchpad (an asset's *Materialize* with config)
first parses it and writes it again with the browser's `yaml` library, which follows YAML 1.2's
core schema: a string like `no` or `2026-01-01` comes out without quotes. The text the user sees
goes back to the webserver as a string, which reads it with PyYAML again (`yes`/`no`/`on`/`off` are
booleans there, `2026-01-01` a date, `1e-07` a string) and validates it. `js_yaml_roundtrip`
redoes the browser's step: a YAML 1.2 core-schema reading and writing, numbers written as
JavaScript writes them.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.emitter import Emitter
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.representer import SafeRepresenter
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner
from yaml.serializer import Serializer


class Core12Resolver(BaseResolver):
    """YAML 1.2's core schema (10.3.2): the only plain scalars that are not strings."""


for tag, pattern, first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    Core12Resolver.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(pattern), list(first))


class Core12Constructor(SafeConstructor):
    def construct_yaml_int(self, node):
        value = self.construct_scalar(node)
        if value.startswith(("0o", "0x")):
            return int(value, 0)
        return int(value)  # decimal, leading zeros included (YAML 1.1 would read them as octal)

    def construct_yaml_float(self, node):
        value = self.construct_scalar(node).lower()
        return float(value.replace(".inf", "inf").replace(".nan", "nan"))


Core12Constructor.add_constructor("tag:yaml.org,2002:int", Core12Constructor.construct_yaml_int)
Core12Constructor.add_constructor("tag:yaml.org,2002:float", Core12Constructor.construct_yaml_float)


class Core12Loader(Reader, Scanner, Parser, Composer, Core12Constructor, Core12Resolver):
    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        Core12Constructor.__init__(self)
        Core12Resolver.__init__(self)


def js_number(value: float) -> str:
    """`String(value)` in JavaScript."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    if 1e-6 <= abs(value) < 1e21:
        return format(Decimal(repr(value)), "f")
    mantissa, exponent = repr(value).split("e")
    return f"{mantissa}e{'-' if exponent.startswith('-') else '+'}{int(exponent.lstrip('+-'))}"


class Core12Representer(SafeRepresenter):
    def represent_float(self, data):
        text = js_number(data)
        tag = "tag:yaml.org,2002:int" if re.fullmatch(r"-?[0-9]+", text) else "tag:yaml.org,2002:float"
        return self.represent_scalar(tag, text)


Core12Representer.add_representer(float, Core12Representer.represent_float)


class Core12Dumper(Emitter, Serializer, Core12Representer, Core12Resolver):
    def __init__(self, stream, default_style=None, default_flow_style=False, canonical=None, indent=None,
                 width=None, allow_unicode=None, line_break=None, encoding=None, explicit_start=None,
                 explicit_end=None, version=None, tags=None, sort_keys=True):
        Emitter.__init__(self, stream, canonical=canonical, indent=indent, width=width, allow_unicode=allow_unicode,
                         line_break=line_break)
        Serializer.__init__(self, encoding=encoding, explicit_start=explicit_start, explicit_end=explicit_end,
                            version=version, tags=tags)
        Core12Representer.__init__(self, default_style=default_style, default_flow_style=default_flow_style,
                                   sort_keys=sort_keys)
        Core12Resolver.__init__(self)


def js_yaml_roundtrip(text: str) -> str:
    """`yaml.stringify(yaml.parse(text))` of the browser's `yaml` library (YAML 1.2 core schema)."""
    return yaml.dump(yaml.load(text, Loader=Core12Loader), Dumper=Core12Dumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True)


ROOT_DEFAULT_YAML = """
query ($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema { rootDefaultYaml }
  }
}"""

IS_VALID = """
query ($pipeline: PipelineSelector!, $runConfigData: RunConfigData) {
  isPipelineConfigValid(pipeline: $pipeline, mode: "default", runConfigData: $runConfigData) {
    __typename
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
  }
}"""

REPOSITORY = """
query ($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      jobs { name description isAssetJob }
      sensors { name description }
      schedules { name description }
    }
    ... on PythonError { message }
  }
}"""


@contextmanager
def webserver_context(repo: Path, instance, scratch: Path):
    """The webserver's GraphQL context over the project's code location, loaded as `dagster dev`
    loads it: a code server process of workspace.yaml's module (the one in `repo`)."""
    from dagster_graphql.test.utils import define_out_of_process_context

    location = yaml.safe_load((repo / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    workspace = scratch / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {**location,
                                                                          "working_directory": str(repo)}}]}))
    with define_out_of_process_context(str(workspace), None, instance) as context:
        yield context, location["location_name"]
