"""What is wrong with a server URL written in talprov.yaml, in words naming no secret.

The rules every ``*url`` setting of a provider instance and ``image_factory.url``
follow, checked when the config is read (``talprov.config``), so that no HTTP
client meets the URL's trouble first, as an exception of its own, or silently
does something else with it (a password taken for a port, a query in the middle
of the paths talprov adds). No message echoes a value that may hold a password.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: A server URL to show as an example where the setting gives none.
EXAMPLE_URL = "https://server.example.net"
#: A '%' that does not start a percent escape (%ZZ, a '%' at the end).
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def url_problem(value: str, *, echo: bool = True) -> str | None:
    """What is wrong with ``value`` as an http(s) URL of a server, or None. Pure.

    A URL the HTTP clients would refuse only when first used (a space, no host,
    a port out of 1-65535, a bad percent escape) is refused here, and one they
    would take otherwise than meant (a query or fragment, which no client sends
    on to the paths it adds).
    """
    if not value.strip():
        # Not "e.g. https://" with nothing after it (QA): an example of a whole URL.
        return f"empty: expected an http(s) URL with a host, e.g. {EXAMPLE_URL}"
    parts = urlsplit(value)
    if "://" in value and parts.scheme not in ("http", "https"):
        # Not "e.g. https://ftp://...": the scheme is there, and wrong.
        scheme = f", not {value.split('://', 1)[0]}://" if echo else ""
        return f"expected an http(s) URL{scheme}"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # The value is shown only when it is written in the file (not a reference's
        # value, which may be a secret named in the wrong setting) and cannot hold
        # a password.
        example = f", e.g. https://{value}" if echo and "@" not in value else ""
        return f"expected an http(s) URL with a host{example}"
    return _shape_problem(value) or userinfo_problem(value) or _part_problem(value)


def _shape_problem(value: str) -> str | None:
    if any(c.isspace() for c in value):
        return "a URL cannot contain spaces"
    if not urlsplit(value).hostname:
        return "the URL names no host"
    return None


def _part_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if _BAD_ESCAPE.search(value):
        return "a bad percent escape: '%' is followed by two hex digits (%25 for '%' itself)"
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return "a server URL has no query or fragment (no '?' or '#')"
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        return "the URL's port must be a number from 1 to 65535"
    return None


def userinfo_problem(value: str) -> str | None:
    """What is wrong with the ``user:password@`` part of the http(s) URL ``value``
    (None: nothing, or no such part). Pure.

    ``https://team:2024#pw@host`` is host ``team``, port 2024, to every URL
    parser: the password would go, unnoticed, into every URL handed to machines
    and nodes. A password without a user name would be dropped without a word.
    """
    netloc = urlsplit(value).netloc
    userinfo, at, _ = netloc.rpartition("@")
    after_host = value.split("//", 1)[-1][len(netloc):]
    if "@" in after_host and "@" not in netloc and not any(c in after_host for c in "#?"):
        # A path holds the '@', or a password with a '/' cut the credentials short.
        return ("an '@' after the host: in a path write it %40; in a user name or "
                "password percent-encode '#', '/', '?' and '@' (%23, %2F, %3F, %40)")
    if "@" in after_host or "@" in userinfo:
        return ("an '@' after the host or inside the credentials: percent-encode '#', "
                "'/', '?' and '@' in a user name or password (%23, %2F, %3F, %40)")
    if at and not userinfo.partition(":")[0]:
        return "a password without a user name: write https://USER:PASSWORD@HOST"
    return None


#: Where a provider type takes its credentials from. No driver takes any from its
#: url (only ``image_factory.url`` may carry ``user:password@``, a rule of its own).
_CREDENTIALS_COME_FROM = {
    "aws": "AWS credentials come from the default credential chain (environment "
           "variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile: the "
           "instance's profile setting, an instance role)",
    "proxmox": "give username + password, or token_id + token_secret",
    "vmware": "give username + password",
    "openstack": "the auth block's application credential or username + password, or "
                 "a clouds.yaml cloud",
    # boot_url is talprov's own boot server: iPXE and Talos fetch from it unasked.
    "baremetal": "the boot server asks machines for none (a config URL carries a "
                 "single-use token instead), and boot_url goes to every machine in its "
                 "boot script and kernel arguments, readable on the provisioning "
                 "network; a BMC's user and password are each machine's (talprov "
                 "baremetal add --bmc-user, --bmc-password)",
}


def credentials_message(provider_type: str | None = None) -> str:
    """What a url of a ``provider_type`` instance holding a user or password is
    told: none goes there, and where its credentials go instead. Pure."""
    source = _CREDENTIALS_COME_FROM.get(provider_type or "",
                                        "give them as the instance's own settings "
                                        "(its username and password, token or "
                                        "credentials)")
    return f"no user or password in the url: {source}"


def credentials_problem(value: str, provider_type: str | None = None) -> str | None:
    """What is wrong with a ``user@``, ``user:password@`` or ``:password@`` in
    ``value``, a provider's URL: the driver ignores it (or takes the password for
    a port); credentials come from elsewhere, said for ``provider_type``
    (:func:`credentials_message`). None without one. Pure; never echoes the value."""
    if "@" in urlsplit(value).netloc:
        return credentials_message(provider_type)
    return None
