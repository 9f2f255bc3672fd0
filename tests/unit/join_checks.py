"""What every platform's join test looks for in what a machine would boot with.

An Omni join reaches a machine either inside the image (``kernel_args`` mode: the
schematic's ``extraKernelArgs``, as Omni's providers do) or in the config the
platform hands over (``documents`` mode: SideroLinkConfig, EventSinkConfig and
KmsgLogConfig appended to the user-data). The checks read what the emulators
recorded: the schematic the fake Image Factory was given, and the user-data,
guestinfo, seed ISO or served config.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from talprov.providers.types import JoinSpec
from talprov.talos.machineconfig import load_documents
from tests.emulators.factory import FakeImageFactory

JOIN_TOKEN = "omni-join-T0KEN-canary-41d7"
JOIN_URL = f"https://omni.example:8090/?jointoken={JOIN_TOKEN}"
SIDEROLINK_ARG = f"siderolink.api={JOIN_URL}"
EVENTS_ARG = "talos.events.sink=[fdae:41e4:649b:9303::1]:8090"
KMSG_ARG = "talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092"


def join(mode: str) -> JoinSpec:
    return JoinSpec(api_url=SecretStr(JOIN_URL), mode=mode)


def schematic_kernel_args(factory: FakeImageFactory, schematic_id: str) -> list[str]:
    """The ``extraKernelArgs`` of the schematic the factory was given under this id."""
    assert schematic_id in factory.schematics, "the factory never saw this schematic"
    body: dict[str, Any] = factory.schematics[schematic_id]
    custom = body.get("customization") or {}
    return [str(arg) for arg in custom.get("extraKernelArgs") or ()]


def assert_join_in_schematic(factory: FakeImageFactory, schematic_id: str) -> None:
    args = schematic_kernel_args(factory, schematic_id)
    assert {SIDEROLINK_ARG, EVENTS_ARG, KMSG_ARG} <= set(args)
    assert args == sorted(args)  # Omni's order


def assert_no_join_in_schematic(factory: FakeImageFactory, schematic_id: str) -> None:
    args = schematic_kernel_args(factory, schematic_id)
    assert not any(JOIN_TOKEN in arg for arg in args)


def join_documents_in(config_text: str) -> dict[str, dict[str, Any]]:
    """The join documents found in a delivered config, by kind."""
    wanted = ("SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig")
    return {str(d["kind"]): d for d in load_documents(config_text, "delivered config")
            if d.get("kind") in wanted}


def assert_join_in_config(config_text: str) -> None:
    found = join_documents_in(config_text)
    assert found["SideroLinkConfig"]["apiUrl"] == JOIN_URL
    assert found["EventSinkConfig"]["endpoint"] == "[fdae:41e4:649b:9303::1]:8090"
    assert found["KmsgLogConfig"]["url"] == "tcp://[fdae:41e4:649b:9303::1]:8092"


def assert_no_join_in_config(config_text: str) -> None:
    assert join_documents_in(config_text) == {}
    assert JOIN_TOKEN not in config_text


MODES = ("kernel_args", "documents")


def assert_join_delivered(mode: str, factory: FakeImageFactory, schematic_id: str,
                          config_text: str) -> None:
    """The join is where ``mode`` puts it, and only there."""
    if mode == "kernel_args":
        assert_join_in_schematic(factory, schematic_id)
        assert_no_join_in_config(config_text)
    else:
        assert_no_join_in_schematic(factory, schematic_id)
        assert_join_in_config(config_text)
