"""Omni join parameters, as kernel arguments or as machine config documents.

Omni hands a machine three things: the SideroLink API URL (carrying the join
token, so it is a secret), the event sink and the kmsg log destination. Talos
reads them either from the kernel command line (``siderolink.api=``,
``talos.events.sink=``, ``talos.logging.kernel=``) or from three documents
(``SideroLinkConfig`` ``apiUrl``, ``EventSinkConfig`` ``endpoint``,
``KmsgLogConfig`` ``name``/``url``). The documents are rendered the way Omni
renders its own join config (Go yaml.v3 style), so both produce the same bytes.

In ``kernel_args`` mode the arguments go into the schematic's ``extraKernelArgs``
(see ``talprov.talos.schematic``), as Omni's providers do: the image built from
it carries them, so every platform that boots the factory's image joins. An
image the user names instead (an AMI, a Glance image, an ISO, a template)
cannot carry them: :func:`refuse_fixed_image` says so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from talprov.errors import ConfigError
from talprov.providers.errors import InvalidRequest
from talprov.providers.types import JoinSpec, MachineRequest
from talprov.talos import goyaml
from talprov.talos.hostname import ConfigReading, without_trailing_separators
from talprov.talos.machineconfig import load_documents

KMSG_LOG_NAME = "omni-kmsg"
JOIN_KINDS = ("SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig")


def join_kernel_args(join: JoinSpec) -> list[str]:
    """The kernel arguments that make a machine join Omni (they contain the join token)."""
    return [
        f"siderolink.api={join.api_url.get_secret_value()}",
        f"talos.events.sink={join.events_sink}",
        f"talos.logging.kernel={join.kmsg_log}",
    ]


def refuse_fixed_image(request: MachineRequest, field: str, given: str | None) -> None:
    """Refuse a join in ``kernel_args`` mode on an image the user named in ``field``.

    The join's kernel args reach the machine only inside the image built from
    the request's schematic; ``given`` (the value of ``field``, None when unset)
    replaces that image, so the machine would never join. Raises
    ``InvalidRequest`` naming ``field``. Pure.
    """
    if given is None or request.join is None or uses_documents(request.join):
        return
    raise InvalidRequest(
        "an Omni join in mode kernel_args travels inside the Image Factory image built "
        "from the schematic; an image named here cannot carry it: unset this field or "
        "use join mode auto or documents",
        field=field,
    )


def _document(fields: list[tuple[str, str]]) -> str:
    return "\n".join(goyaml.mapping_lines(fields, 0)) + "\n"


def _join_document_list(join: JoinSpec) -> list[tuple[str, str, str]]:
    """(kind, name, text) of each join document."""
    header = [("apiVersion", "v1alpha1")]
    api_url = join.api_url.get_secret_value()
    return [
        (
            "SideroLinkConfig",
            "",
            _document([*header, ("kind", "SideroLinkConfig"), ("apiUrl", api_url)]),
        ),
        (
            "EventSinkConfig",
            "",
            _document([*header, ("kind", "EventSinkConfig"), ("endpoint", join.events_sink)]),
        ),
        (
            "KmsgLogConfig",
            KMSG_LOG_NAME,
            _document(
                [
                    *header,
                    ("kind", "KmsgLogConfig"),
                    ("name", KMSG_LOG_NAME),
                    ("url", join.kmsg_log),
                ]
            ),
        ),
    ]


def join_documents(join: JoinSpec) -> str:
    """The SideroLinkConfig, EventSinkConfig and KmsgLogConfig documents, as one YAML stream.

    The result contains the join token: treat it as a secret.
    """
    return "---\n".join(text for _, _, text in _join_document_list(join))


def uses_documents(join: JoinSpec | None) -> bool:
    """Whether the join travels as config documents (modes ``auto`` and ``documents``)."""
    return join is not None and join.mode in ("auto", "documents")


def render_user_data(machine_config: str, join: JoinSpec | None) -> str:
    """The text to deliver to the machine: its config plus, when asked, the join documents.

    With ``join`` in mode ``auto`` or ``documents`` the three join documents are
    appended as extra YAML documents (an empty config yields just them); a join
    document the config already has (same kind, and name for KmsgLogConfig) is
    not added again, so rendering twice changes nothing. In mode
    ``kernel_args`` or without a join the config is returned as is.
    Raises ``ConfigError`` if the config is not valid YAML. Pure.
    """
    return _with_join(machine_config, ConfigReading(machine_config), join)


def _with_join(config: str, reading: ConfigReading, join: JoinSpec | None) -> str:
    """``config`` plus the join documents ``reading`` (of ``config``, or of the config
    it named: naming adds no join document) does not have yet."""
    if join is None or not uses_documents(join):
        return config
    present = reading.kinds()
    wanted = [text for kind, name, text in _join_document_list(join) if (kind, name) not in present]
    body = without_trailing_separators(config)
    parts = ([body] if body else []) + wanted
    return "---\n".join(parts)


def user_data_for(request: MachineRequest, *, named: bool = True,
                  rendering: RenderingPass | None = None) -> str:
    """What the platform hands the machine: its config, named, plus the join documents.

    The config gets the machine's hostname (the request id) as Talos of the
    request's version honours it (``talprov.talos.hostname``; not when
    ``named`` is false), then the join
    documents when the join travels as documents. With ``rendering`` each
    distinct config of its pass is parsed once (see :class:`RenderingPass`); the
    bytes are the same either way. Contains secrets. Raises
    ``InvalidRequest`` naming ``machine_config`` for malformed YAML (never
    quoting it). Pure.
    """
    config = request.machine_config.get_secret_value()
    reading = (rendering or RenderingPass()).reading(config)
    try:
        if named:
            config = reading.named(request.id, request.talos_version)
        return _with_join(config, reading, request.join)
    except ConfigError as exc:
        raise InvalidRequest(exc.message, field="machine_config") from None


class RenderingPass:
    """The machine configs one pass renders user data of, each read once.

    A machine set's requests share one config and differ in their name and
    join: :func:`user_data_for` with this parses each distinct config once
    (and writes each of its documents once), not once per request; what is
    request-specific (the name, the join documents) is made per request.
    It holds the parsed configs (CA keys, tokens) as long as it lives: make
    one per pass and drop it when the pass ends, so secrets stay in memory no
    longer than the rendering did before. Not thread-safe; idempotent.
    """

    def __init__(self) -> None:
        self._readings: dict[str, ConfigReading] = {}

    def reading(self, config: str) -> ConfigReading:
        """The one :class:`ConfigReading` of ``config`` in this pass."""
        found = self._readings.get(config)
        if found is None:
            found = self._readings[config] = ConfigReading(config)
        return found


def join_only_config(request: MachineRequest) -> str:
    """What a PXE-booted machine that joins Omni fetches at ``talos.config``: the join
    documents, then the request's own extra typed documents, never a v1alpha1 one.

    As Omni's bare-metal provider serves its machines: the join config alone (it
    refuses v1alpha1, SideroLinkConfig and EventSinkConfig documents among the
    extras), because Omni sends the machine config over SideroLink once the
    machine joined. A v1alpha1 document holds the cluster's CA keys; a boot
    server must not hand it to whoever presents a token. The documents go in
    every join mode: Talos's metal platform takes an empty ``talos.config`` answer
    for a config and fails to load it, and a SideroLinkConfig wins over the
    ``siderolink.api`` kernel argument, which carries the same URL. Raises
    ``InvalidRequest`` naming ``machine_config`` for a v1alpha1 or join document
    in the request's config, or for malformed YAML (never quoting it); ``ValueError``
    without a join. Pure.
    """
    if request.join is None:
        raise ValueError("join_only_config needs a request with a join")
    text = request.machine_config.get_secret_value()
    try:
        documents = load_documents(text, "machine_config")
    except ConfigError as exc:
        raise InvalidRequest(exc.message, field="machine_config") from None
    join_kinds = {(kind, name) for kind, name, _ in _join_document_list(request.join)}
    for index, document in enumerate(documents, start=1):
        kind = document.get("kind")
        if kind is None:
            raise InvalidRequest(
                f"document {index} is a v1alpha1 machine config: a machine that joins Omni "
                "over PXE is given only the join documents (Omni sends the machine config "
                "over SideroLink); leave the config empty or keep only typed documents",
                field="machine_config")
        if (str(kind), str(document.get("name", ""))) in join_kinds:
            raise InvalidRequest(f"document {index} ({kind}) is one of the join's own "
                                 "documents; the join makes it", field="machine_config")
    extras = without_trailing_separators(text) if documents else ""
    while extras.startswith(("---\n", "\n")):  # a leading marker would make an empty document
        extras = extras.split("\n", 1)[1]
    return "---\n".join([join_documents(request.join), *([extras] if extras else [])])


def check_user_data(request: MachineRequest) -> None:
    """Pre-flight for drivers that pass the config as user-data: it must render.

    Raises ``InvalidRequest`` (field ``machine_config``), never quoting the config.
    No network; idempotent.
    """
    user_data_for(request)


class UserDataCache:
    """:func:`user_data_for` remembered for the last ``size`` requests rendered.

    A driver whose steps each need the rendered config (vSphere clones with it,
    then compares the VM's extraConfig with it) renders it once: YAML parsing
    and writing is most of a create's own CPU. Keyed by everything the result
    depends on (request id, Talos version, config text, join), so a changed
    request renders afresh. Holds secrets in memory only, as the request does.
    Thread-safe; raises what ``user_data_for`` raises (failures are not kept).
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._rendered: OrderedDict[tuple[object, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, request: MachineRequest) -> str:
        key = (request.id, request.talos_version, request.machine_config.get_secret_value(),
               request.join)
        with self._lock:
            found = self._rendered.get(key)
            if found is not None:
                self._rendered.move_to_end(key)
                return found
        rendered = user_data_for(request)
        with self._lock:
            self._rendered[key] = rendered
            while len(self._rendered) > self._size:
                self._rendered.popitem(last=False)
        return rendered
