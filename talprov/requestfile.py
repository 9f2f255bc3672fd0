"""Request files, as ``talprov machine create -f`` reads them, into MachineRequests.

A request file names its machine configuration by file (relative to the request
file) or inline, optionally with patches, and an optional Omni join. The result is
a resolved :class:`MachineRequest` whose config text is a secret.
"""

from __future__ import annotations

import secrets as pysecrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from talprov.config import parse_yaml_mapping
from talprov.errors import ConfigError, file_label, read_named_file, read_user_file, validate
from talprov.providers.labels import UserLabels
from talprov.providers.types import (
    Arch,
    GrpcTunnelMode,
    JoinSpec,
    MachineRequest,
    MetaValue,
    Overlay,
    RequestFlag,
    talos_version_problem,
)
from talprov.secrets import resolve_refs, resolve_tree


class ConfigSource(BaseModel):
    """Where a machine's Talos configuration comes from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    file: str | None = Field(default=None, description="Path, relative to the request file.")
    inline: SecretStr | None = Field(default=None, description="The YAML text itself.")
    patches: list[str] = Field(
        default_factory=list, description="Patch files (RFC 7386 or Talos patch documents)."
    )


class RequestFile(BaseModel):
    """The request file's shape (Omni MachineRequest field names)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str | None = None
    provider: str
    talos_version: str
    arch: Arch = Arch.AMD64
    # The API's types: a quoted flag or META key is refused, not read (QA).
    secure_boot: RequestFlag = False
    extensions: list[str] = Field(default_factory=list)
    kernel_args: list[str] = Field(default_factory=list)
    grpc_tunnel: GrpcTunnelMode = GrpcTunnelMode.UNSET
    meta_values: list[MetaValue] = Field(default_factory=list)
    overlay: Overlay | None = None
    config: ConfigSource | None = None
    join: JoinSpec | None = None
    labels: UserLabels = Field(default_factory=dict)
    provider_data: dict[str, Any] = Field(default_factory=dict)


def generate_request_id() -> str:
    """A fresh request id for files that do not name one."""
    return f"m-{pysecrets.token_hex(5)}"


def read_machine_config(
    source: ConfigSource, *, base_dir: Path, where: str, talos_version: str
) -> str:
    """The machine config text a source names, patched and checked for ``talos_version``.

    Raises ``ConfigError`` naming the file and field for unreadable files,
    malformed YAML and a config that Talos ``talos_version`` would refuse.
    """
    from talprov.talos.patchcheck import patched_and_checked

    if (source.file is None) == (source.inline is None):
        raise ConfigError(f"{where}: config", "give exactly one of file or inline")
    if source.file is not None:
        path = _relative(source.file, base_dir)
        origin = str(path)
        text = read_user_file(path, f"{where}: config.file")
    else:
        assert source.inline is not None
        origin = f"{where}: config.inline"
        text = source.inline.get_secret_value()
    patches = []
    for index, patch in enumerate(source.patches):
        patch_path = _relative(patch, base_dir)
        patches.append((str(patch_path),
                        read_user_file(patch_path, f"{where}: config.patches[{index}]")))
    return patched_and_checked(text, origin, patches, talos_version)


def _check_version(version: str, where: str) -> None:
    # The config is checked against this version's rules, so it must parse first; a
    # version of a line talprov does not know is logged as a warning here.
    from talprov.talos.versions import parse_version, rules_line

    problem = talos_version_problem(version)
    if problem is not None:
        raise ConfigError(f"{where}: talos_version", problem)
    rules_line(parse_version(version))


def _relative(name: str, base_dir: Path) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base_dir / path


def parse_request(raw: dict[str, Any], *, where: str, base_dir: Path) -> MachineRequest:
    """Turn a parsed request mapping into a MachineRequest.

    Raises ``ConfigError`` naming ``where`` and the field.
    """
    raw = dict(raw)
    # Only the join URL may carry references: expanding them elsewhere would turn
    # arbitrary text into secrets.
    if isinstance(raw.get("join"), dict) and isinstance(raw["join"].get("api_url"), str):
        raw["join"] = dict(raw["join"])
        raw["join"]["api_url"] = resolve_refs(
            raw["join"]["api_url"], where=f"{where}: join.api_url", base_dir=base_dir
        )
    if isinstance(raw.get("provider_data"), dict):
        raw["provider_data"] = resolve_tree(
            raw["provider_data"], where=f"{where}: provider_data", base_dir=base_dir
        )
    spec = validate(RequestFile, raw, where, sep=": ")
    config_text = ""
    _check_version(spec.talos_version, where)
    if spec.config is not None:
        config_text = read_machine_config(
            spec.config, base_dir=base_dir, where=where, talos_version=spec.talos_version)
    body: dict[str, Any] = spec.model_dump(exclude={"config", "join", "id"})
    body["id"] = spec.id or generate_request_id()
    body["machine_config"] = SecretStr(config_text)
    body["join"] = spec.join
    return validate(MachineRequest, body, where, sep=": ")


def load_request_file(path: Path) -> MachineRequest:
    """Read a request file. Raises ``ConfigError`` naming the file and field."""
    where = file_label(path)
    text = read_named_file(path, "request file")
    raw = parse_yaml_mapping(text, where)
    return parse_request(raw, where=where, base_dir=path.parent)
