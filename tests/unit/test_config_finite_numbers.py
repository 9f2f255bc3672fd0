"""A number setting refuses YAML's ``.inf`` and ``.nan`` (and the strings "inf",
"nan"), naming the setting and saying a finite number is needed.

Before: pydantic takes inf and nan for a float by default, so bare metal's
``poll_interval: .inf`` or the service's ``health_cache_seconds: .inf`` passed
``config check`` and broke later (``time.sleep(inf)`` and ``Event.wait(inf)``
raise OverflowError, ``now + timedelta(seconds=inf)`` too); ``.nan`` was caught
only by a bound, whose message ("must be >= 0") did not say what was wrong.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import talprov
from talprov.errors import describe_problem
from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error

_NOT_FINITE = [math.inf, -math.inf, math.nan, "inf", "nan"]


def write_bare_metal_setting(home: Home, setting: str, value: str) -> None:
    """A config whose one provider instance, ``metal`` (bare metal), has
    ``setting: value`` (written as YAML) beside its required settings."""
    home.config_path.write_text(
        f"store: {home.store_url}\n"
        "providers:\n"
        "  metal:\n"
        "    type: baremetal\n"
        f"    inventory: {home.root / 'inventory.sqlite'}\n"
        "    boot_url: http://127.0.0.1:8081\n"
        f"    {setting}: {value}\n")


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
@pytest.mark.parametrize("setting", ["poll_interval", "wipe_seconds", "observe_interval"])
def test_a_bare_metal_interval_that_is_not_finite_is_refused(
        home: Home, setting: str, value: str) -> None:
    write_bare_metal_setting(home, setting, value)
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, f"providers.metal.{setting}",
                       "must be a finite number")


@pytest.mark.parametrize("value", [".inf", ".nan", "'inf'"])
def test_a_service_setting_that_is_not_finite_is_refused(home: Home, value: str) -> None:
    home.config_path.write_text(
        f"store: {home.store_url}\n"
        "providers: {}\n"
        "service:\n"
        f"  health_cache_seconds: {value}\n")
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "service.health_cache_seconds",
                       "must be a finite number")


def _import_every_module() -> None:
    for module in pkgutil.walk_packages(talprov.__path__, "talprov."):
        # __main__ runs the CLI; alembic's env.py runs only inside alembic; a
        # launcher runs an emulator in a process of its own, and importing it here
        # would bring that emulator's code into this one (fakepve's: see
        # test_fakepve_code_stays_out_of_the_test_process).
        if module.name.endswith(("__main__", ".env", "_launcher")):
            continue
        importlib.import_module(module.name)


def _subclasses(cls: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _holds_float(kind: Any) -> bool:
    if kind is float:
        return True
    return any(_holds_float(arg) for arg in typing.get_args(kind))


def _float_fields() -> list[tuple[type[BaseModel], str]]:
    _import_every_module()
    found = {(model, name) for model in _subclasses(BaseModel)
             if model.__module__.startswith("talprov")
             for name, field in model.model_fields.items()
             if _holds_float(field.annotation)}
    return sorted(found, key=lambda pair: (pair[0].__module__, pair[0].__qualname__, pair[1]))


_FIELDS = _float_fields()


def test_the_walk_finds_the_known_settings() -> None:
    # A walk that found nothing would prove nothing.
    names = {f"{model.__name__}.{name}" for model, name in _FIELDS}
    assert {"BareMetalConfig.poll_interval", "ServiceConfig.health_cache_seconds",
            "AwsConfig.read_timeout", "ProxmoxConfig.task_timeout",
            "AutoscalingOptions.scale_down_utilization_threshold"} <= names


@pytest.mark.parametrize(("model", "name"), _FIELDS,
                         ids=[f"{m.__name__}.{n}" for m, n in _FIELDS])
def test_every_float_field_of_every_model_refuses_inf_and_nan(
        model: type[BaseModel], name: str) -> None:
    """Every pydantic model of talprov, settings, request files, cluster specs, API
    bodies and provider state alike: a new one cannot forget the rule."""
    key = model.model_fields[name].alias or name
    for value in _NOT_FINITE:
        with pytest.raises(ValidationError) as caught:
            model.model_validate({key: value})
        # Other fields may be missing; this one must be refused for what it is.
        mine = [e for e in caught.value.errors() if e["loc"][:1] == (key,)]
        assert mine, (value, caught.value.errors())
        assert describe_problem(mine)[1] == "must be a finite number, not .inf or .nan", (
            value, mine)


def test_a_finite_number_is_still_taken() -> None:
    from talprov.baremetal.config import BareMetalConfig
    config = BareMetalConfig.model_validate({
        "inventory": "inv.sqlite", "boot_url": "http://127.0.0.1:8081",
        "poll_interval": "2.5", "wipe_seconds": 0})
    assert (config.poll_interval, config.wipe_seconds) == (2.5, 0.0)
