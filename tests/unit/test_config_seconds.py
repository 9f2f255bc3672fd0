"""Every setting that is a number of seconds has an upper bound, at most a year
(talprov.durations.MAX_SECONDS), so a huge value is refused at load, naming the
setting and the bound.

Before (QA): the timeouts and intervals of the drivers, bare metal's and
``service.health_cache_seconds`` had only a lower bound. ``poll_interval: 1e308``
passed ``config check``; then the reconciler's ``now + timedelta(seconds=1e308)``
for a step's retry raised OverflowError ("Python int too large to convert to C
int"), and so did a BMC throttle's ``time.sleep(1e308)`` ("timestamp out of
range for platform time_t"), as ``Event.wait`` and a socket timeout do.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from talprov.durations import MAX_SECONDS
from talprov.errors import describe_problem
from talprov.service.config import ServiceConfig
from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error
from tests.unit.test_config_finite_numbers import (
    _import_every_module,
    _subclasses,
    write_bare_metal_setting,
)

#: A field's name that says it is a number of seconds (``powered_at`` and the
#: like, points in time in a provider's state, are not).
_SECONDS_NAME = re.compile(r"(^|_)(timeout|interval|seconds|ttl|wait)$")


def _holds_number(kind: Any) -> bool:
    if kind in (float, int):
        return True
    return any(_holds_number(arg) for arg in typing.get_args(kind))


def _is_seconds(name: str, field: FieldInfo) -> bool:
    return _holds_number(field.annotation) and (
        _SECONDS_NAME.search(name) is not None
        or (field.description or "").lower().startswith("seconds"))


def _upper_bound(field: FieldInfo) -> float | None:
    bounds = [float(m.le) for m in field.metadata  # type: ignore[arg-type]
              if isinstance(m, annotated_types.Le)]
    bounds += [float(m.lt) for m in field.metadata  # type: ignore[arg-type]
               if isinstance(m, annotated_types.Lt)]
    return min(bounds, default=None)


def _seconds_fields() -> list[tuple[type[BaseModel], str]]:
    _import_every_module()
    found = {(model, name) for model in _subclasses(BaseModel)
             if model.__module__.startswith("talprov")
             for name, field in model.model_fields.items() if _is_seconds(name, field)}
    return sorted(found, key=lambda pair: (pair[0].__module__, pair[0].__qualname__, pair[1]))


_FIELDS = _seconds_fields()
_IDS = [f"{model.__name__}.{name}" for model, name in _FIELDS]


def test_the_walk_finds_the_known_seconds_settings() -> None:
    # A walk that found nothing would prove nothing.
    assert {"AwsConfig.poll_interval", "AwsConfig.read_timeout", "BareMetalConfig.wipe_seconds",
            "BareMetalConfig.bmc_min_interval", "DhcpConfig.lease_seconds",
            "OpenStackConfig.api_timeout", "ProxmoxConfig.shutdown_timeout",
            "VSphereConfig.task_timeout", "ServiceConfig.health_cache_seconds",
            "ServiceConfig.lease_ttl", "AutoscalerConfig.lease_wait"} <= set(_IDS)


@pytest.mark.parametrize(("model", "name"), _FIELDS, ids=_IDS)
def test_every_seconds_field_has_an_upper_bound_of_at_most_a_year(
        model: type[BaseModel], name: str) -> None:
    """A new timeout or interval without ``Seconds`` (or a bound of its own) fails here."""
    bound = _upper_bound(model.model_fields[name])
    assert bound is not None, f"{model.__name__}.{name}: no upper bound (use durations.Seconds)"
    assert bound <= MAX_SECONDS, (model.__name__, name, bound)
    key = model.model_fields[name].alias or name
    # A thousand years: a float and an int alike (1e308 is no int pydantic parses).
    with pytest.raises(ValidationError) as caught:
        model.model_validate({key: MAX_SECONDS * 1000})
    mine = [e for e in caught.value.errors() if e["loc"][:1] == (key,)]
    assert mine, caught.value.errors()
    assert describe_problem(mine)[1] in (f"must be <= {bound:.0f}", f"must be < {bound:.0f}")


@pytest.mark.parametrize("setting", ["poll_interval", "read_timeout"])
def test_an_aws_setting_of_1e308_seconds_is_refused_at_load(home: Home, setting: str) -> None:
    home.config_path.write_text(
        f"store: {home.store_url}\n"
        "providers:\n"
        "  cloud:\n"
        "    type: aws\n"
        "    region: eu-west-1\n"
        f"    {setting}: 1e308\n")
    result = home.invoke("config", "check")
    assert_usage_error(result.exit_code, result.output, f"providers.cloud.{setting}",
                       "must be <= 31536000")


def test_a_bare_metal_and_a_service_setting_of_1e308_seconds_are_refused(home: Home) -> None:
    write_bare_metal_setting(home, "bmc_min_interval", "1e308")
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "providers.metal.bmc_min_interval",
                       "must be <= 31536000")
    home.config_path.write_text(
        f"store: {home.store_url}\n"
        "providers: {}\n"
        "service:\n"
        "  health_cache_seconds: 1e308\n")
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "service.health_cache_seconds",
                       "must be <= 31536000")


def test_a_year_is_still_taken() -> None:
    from talprov.baremetal.config import BareMetalConfig

    config = BareMetalConfig.model_validate({
        "inventory": "inv.sqlite", "boot_url": "http://127.0.0.1:8081",
        "install_timeout": MAX_SECONDS,
        "dhcp": {"interface_address": "10.0.0.1", "lease_seconds": MAX_SECONDS}})
    assert config.dhcp is not None
    assert (config.install_timeout, config.dhcp.lease_seconds) == (MAX_SECONDS, MAX_SECONDS)


@pytest.mark.parametrize(("setting", "range_said"), [
    ("poll_interval", "more than 0 and at most 31536000"),
    ("wipe_seconds", "at least 0 and at most 31536000"),
    ("bmc_attempts", "at least 1 and at most 10"),  # an integer's too
])
def test_an_inf_or_nan_setting_is_told_the_range_it_may_take(
        home: Home, setting: str, range_said: str) -> None:
    """QA: ".inf" was answered "must be a finite number", not what would do."""
    write_bare_metal_setting(home, setting, ".nan")
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, f"providers.metal.{setting}: must be "
                       f"a finite number, not .inf or .nan: {range_said}")


def test_a_finite_number_message_without_bounds_or_model_names_no_range() -> None:
    class Free(BaseModel):
        model_config = {"allow_inf_nan": False}
        seconds: float
        nested: list[Free] = []

    for data, where in (({"seconds": "inf"}, "seconds"),
                        ({"seconds": 1, "nested": [{"seconds": "nan"}]}, "nested[0].seconds")):
        with pytest.raises(ValidationError) as caught:
            Free.model_validate(data)
        assert describe_problem(caught.value.errors(), model=Free) == (
            where, "must be a finite number, not .inf or .nan")
    with pytest.raises(ValidationError) as caught:
        ServiceConfig.model_validate({"health_cache_seconds": "inf"})
    # Without the model, the range is not known: the message stays as it was.
    assert describe_problem(caught.value.errors()) == (
        "health_cache_seconds", "must be a finite number, not .inf or .nan")

