"""A fake OpenStack cloud (Keystone v3, Nova 2.1, Glance v2, Neutron v2.0) on 127.0.0.1.

No OpenStack emulator exists on PyPI or Debian, so this one speaks the documented
REST shapes over real HTTP and the real openstacksdk talks to it. It imports
nothing of talprov. ``FakeOpenStack().start()`` runs it; ``auth()`` gives a
clouds.yaml-style auth block; faults: ``set_quota()``, ``no_valid_host()``,
``fail_builds()``, ``fail_next()``, ``slow_builds()``, ``revoke_tokens()``,
``change_password()`` and ``after()`` hooks.
"""

from talprov.testing.openstack.cloud import FakeOpenStack

__all__ = ["FakeOpenStack"]
