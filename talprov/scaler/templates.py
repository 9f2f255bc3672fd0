"""What a set's machine is created from: the request template and its hash.

The template of a (set, failure domain) is the MachineRequest every machine of
that set in that domain is created from, with an empty id. Its fingerprint (the
*template hash*) is stored with each request; when the spec changes what machines
are made of (Talos version, schematic, provider_data, config, labels), the hash
changes and existing requests are outdated.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import string
from collections.abc import Callable, Mapping
from typing import Any

from talprov.providers.labels import LABEL_CLUSTER, LABEL_DOMAIN, LABEL_ROLE, LABEL_SET
from talprov.providers.types import REQUEST_ID_PATTERN, MachineRequest
from talprov.scaler.configtext import merge_patch
from talprov.scaler.models import ClusterSpec, MachineClass

SUFFIX_LEN = 5
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
# Only used as a placeholder while hashing; never a real request id.
_TEMPLATE_ID = "template"

NameGenerator = Callable[[str], str]
"""Given a prefix ``<cluster>-<set>``, return a candidate request id."""


def random_names(prefix: str) -> str:
    """``<prefix>-<5 random lower-case letters/digits>`` (not pure: for real applies)."""
    return f"{prefix}-{''.join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(SUFFIX_LEN))}"


def seeded_names(seed: str) -> NameGenerator:
    """A deterministic NameGenerator: the same seed yields the same id sequence.

    Each call returns the next name; plans made from the same inputs and a fresh
    generator with the same seed are identical.
    """
    counter = 0

    def generate(prefix: str) -> str:
        nonlocal counter
        counter += 1
        digest = hashlib.blake2b(f"{seed}/{prefix}/{counter}".encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "big")
        suffix = ""
        for _ in range(SUFFIX_LEN):
            value, rest = divmod(value, len(_SUFFIX_ALPHABET))
            suffix += _SUFFIX_ALPHABET[rest]
        return f"{prefix}-{suffix}"

    return generate


def template(spec: ClusterSpec, set_name: str, domain: str | None) -> MachineRequest:
    """The request a machine of ``set_name`` in ``domain`` is created from (id blank).

    Raises KeyError for an unknown set and ValueError for a domain the set's class
    does not list. Cached on the spec; idempotent.
    """
    return _template(spec, spec.cache, set_name, domain)


# Internals take the cache dict: reading a pydantic private attribute is slow
# enough to show up when a spec has hundreds of sets.
def _template(
    spec: ClusterSpec, cache: dict[Any, Any], set_name: str, domain: str | None
) -> MachineRequest:
    key = ("template", set_name, domain)
    cached: MachineRequest | None = cache.get(key)
    if cached is not None:
        return cached
    machine_set = spec.sets[set_name]
    machine_class = spec.machine_classes[machine_set.machine_class]
    base = _base_template(spec, cache, set_name)
    if domain is None:
        request = base
    else:
        overrides = _domain_overrides(cache, machine_class)
        if domain not in overrides:
            raise ValueError(f"set {set_name!r} has no failure domain {domain!r}")
        # The base was validated; a domain only adds a label and provider_data keys.
        request = base.model_copy(update={
            "labels": {**base.labels, LABEL_DOMAIN: domain},
            "provider_data": merge_patch(base.provider_data, overrides[domain]),
        })
    cache[key] = request
    return request


def _domain_overrides(
    cache: dict[Any, Any], machine_class: MachineClass
) -> dict[str | None, dict[str, Any]]:
    key = ("domains", machine_class.name)
    overrides: dict[str | None, dict[str, Any]] | None = cache.get(key)
    if overrides is None:
        overrides = {d.name: d.provider_data for d in machine_class.failure_domains}
        cache[key] = overrides
    return overrides


def _base_template(spec: ClusterSpec, cache: dict[Any, Any], set_name: str) -> MachineRequest:
    key = ("base", set_name)
    cached: MachineRequest | None = cache.get(key)
    if cached is not None:
        return cached
    machine_set = spec.sets[set_name]
    machine_class = spec.machine_classes[machine_set.machine_class]
    labels = dict(machine_set.labels)
    labels.update(
        {LABEL_CLUSTER: spec.name, LABEL_SET: set_name, LABEL_ROLE: machine_set.role.value}
    )
    request = MachineRequest(
        id=_TEMPLATE_ID,
        provider=machine_class.provider,
        talos_version=spec.talos_version,
        arch=machine_class.arch,
        secure_boot=machine_class.secure_boot,
        extensions=machine_class.extensions,
        kernel_args=machine_class.kernel_args,
        meta_values=machine_class.meta_values,
        overlay=machine_class.overlay,
        machine_config=machine_set.machine_config,
        join=spec.join,
        labels=labels,
        provider_data=dict(machine_class.provider_data),
    )
    cache[key] = request
    return request


def template_hash(spec: ClusterSpec, set_name: str, domain: str | None) -> str:
    """A digest of everything a machine of ``set_name`` in ``domain`` is made from.

    The set's template (without a domain, id blanked) is digested with
    :meth:`MachineRequest.fingerprint`; a domain adds its label and the merged
    provider_data on top. Any change of what the request would contain changes
    the hash. Cached on the spec; raises like :func:`template`.
    """
    return _template_hash(spec, spec.cache, set_name, domain)


def _template_hash(
    spec: ClusterSpec, cache: dict[Any, Any], set_name: str, domain: str | None
) -> str:
    key = ("hash", set_name, domain)
    cached: str | None = cache.get(key)
    if cached is not None:
        return cached
    base_key = ("hash", set_name, None)
    base: str | None = cache.get(base_key)
    if base is None:
        base = _base_template(spec, cache, set_name).model_copy(update={"id": ""}).fingerprint()
        cache[base_key] = base
    if domain is None:
        return base
    # Hashing the domain's part on top of the set's fingerprint is ~10x cheaper than a
    # full fingerprint per (set, domain), which matters for specs with many sets.
    machine_class = spec.machine_classes[spec.sets[set_name].machine_class]
    # The domain's part depends on the class only: written once per (class, domain),
    # not once per set (it was a third of a cold plan() of 200 sets).
    extra_key = ("domain part", machine_class.name, domain)
    extra: str | None = cache.get(extra_key)
    if extra is None:
        overrides = _domain_overrides(cache, machine_class)
        if domain not in overrides:
            raise ValueError(f"set {set_name!r} has no failure domain {domain!r}")
        extra = json.dumps(
            {"domain": domain, "provider_data": merge_patch(machine_class.provider_data,
                                                            overrides[domain])},
            sort_keys=True, separators=(",", ":"), default=str,
        )
        cache[extra_key] = extra
    cached = hashlib.sha256(f"{base}\0{extra}".encode()).hexdigest()
    cache[key] = cached
    return cached


def template_hashes(spec: ClusterSpec) -> Mapping[tuple[str, str | None], str]:
    """Every (set, domain) → template hash of the spec (cached)."""
    cache = spec.cache
    cached: dict[tuple[str, str | None], str] | None = cache.get("hashes")
    if cached is None:
        cached = {}
        for set_name, machine_set in spec.sets.items():
            machine_class = spec.machine_classes[machine_set.machine_class]
            domains: list[str | None] = [d.name for d in machine_class.failure_domains] or [None]
            for domain in domains:
                cached[(set_name, domain)] = _template_hash(spec, cache, set_name, domain)
        cache["hashes"] = cached
    return cached


def desired_request(
    spec: ClusterSpec, set_name: str, request_id: str, domain: str | None
) -> MachineRequest:
    """The request to create for machine ``request_id`` of ``set_name`` in ``domain``.

    Raises ValueError when ``request_id`` is not a valid request id or the domain
    is unknown, KeyError for an unknown set. Pure.
    """
    if len(request_id) > 63 or not _REQUEST_ID.fullmatch(request_id):
        raise ValueError("request id must be a DNS label of at most 63 characters")
    # model_copy skips validation: the template was validated and the id checked above.
    # Fresh top-level dicts so that callers cannot change the cached template.
    base = template(spec, set_name, domain)
    return base.model_copy(update={
        "id": request_id,
        "labels": dict(base.labels),
        "provider_data": copy.deepcopy(base.provider_data),
    })


def id_prefix(spec: ClusterSpec, set_name: str) -> str:
    return f"{spec.name}-{set_name}"
