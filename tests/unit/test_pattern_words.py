"""Every pattern a person's input is checked against is told in words (QA: ids, set
names and talos_version answered with the regular expression)."""

from __future__ import annotations

import importlib
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from talprov.errors import pattern_in_words, validation_message
from talprov.providers.types import REQUEST_ID_PATTERN
from talprov.proxmox.config import ProxmoxConfig
from talprov.scaler.models import CLUSTER_NAME_PATTERN, NAME_PATTERN
from talprov.service.models import SET_NAME_PATTERN
from talprov.service.routes_requests import NO_NUL


@pytest.mark.parametrize(("pattern", "words"), [
    (REQUEST_ID_PATTERN, "at most 63 characters"),
    (NAME_PATTERN, "at most 63 characters"),
    (CLUSTER_NAME_PATTERN, "at most 42 characters"),
    (SET_NAME_PATTERN, "at most 52 characters"),
    (NO_NUL, "NUL"),
])
def test_each_pattern_is_told_in_words(pattern: str, words: str) -> None:
    told = pattern_in_words(pattern)
    assert words in told
    assert "^" not in told
    assert "must match" not in told


def test_an_unknown_pattern_is_still_named() -> None:
    assert pattern_in_words("^x+$") == "must match ^x+$"


def _patterns(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[tuple[str, str]]:
    """(model.field, pattern) for every pattern of ``model`` and the models it holds."""
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        found = [getattr(m, "pattern", None) for m in field.metadata]
        inner: list[Any] = [field.annotation]
        while inner:
            annotation = inner.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from _patterns(annotation, seen)
            found += [getattr(m, "pattern", None) for m in getattr(annotation, "__metadata__", ())]
            inner += typing.get_args(annotation)
        yield from ((f"{model.__name__}.{name}", p) for p in found if isinstance(p, str))


SETTINGS_MODULES = ("talprov.config", "talprov.proxmox.config", "talprov.proxmox.data",
                    "talprov.vmware.config", "talprov.vmware.data", "talprov.aws.config",
                    "talprov.aws.data", "talprov.openstack.config", "talprov.openstack.data",
                    "talprov.baremetal.config")


def test_every_pattern_of_settings_and_provider_data_is_told_in_words() -> None:
    # QA: a Proxmox `url: http://...` answered `must match ^https://[^/\s]+(:\d+)?/?$`.
    seen: set[type[BaseModel]] = set()
    found: dict[str, str] = {}
    for module in map(importlib.import_module, SETTINGS_MODULES):
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseModel)
                    and value.__module__ == module.__name__):
                found.update(_patterns(value, seen))
    assert "ProxmoxConfig.url" in found  # the walk reaches what it is meant to
    assert "Spot.max_price" in found  # and nested models
    untold = {where: p for where, p in found.items() if "must match" in pattern_in_words(p)}
    assert not untold


def test_a_proxmox_url_without_https_is_told_in_words() -> None:
    with pytest.raises(ValidationError) as caught:
        ProxmoxConfig.model_validate({"url": "http://pve.example.test:8006",
                                      "token_id": "root@pam!t", "token_secret": "s"})
    told = validation_message(caught.value, "providers.px-http", model=ProxmoxConfig)
    assert told == ("providers.px-http.url",
                    "must be an https:// URL with a host and optional port, no path")
