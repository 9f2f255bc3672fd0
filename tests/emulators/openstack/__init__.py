"""The fake OpenStack cloud's fixtures; the fake itself is :mod:`talprov.testing.openstack`
(one copy, shared with the pytest plugin).

It is a fake OpenStack cloud (Keystone v3, Nova 2.1, Glance v2, Neutron v2.0) for tests.

No OpenStack emulator exists on PyPI or Debian, so this one speaks the documented
REST shapes over real HTTP on 127.0.0.1 and the real openstacksdk talks to it.
Use the ``openstack_cloud`` pytest fixture, or ``FakeOpenStack`` directly:

* ``auth()`` gives a clouds.yaml-style auth block, ``add_application_credential()``
  an application credential;
* ``servers()``, ``ports()``, ``images()``, ``floating_ips()``, ``server_groups()``
  and ``calls`` show what clients left behind and asked for;
* faults: ``set_quota()``, ``no_valid_host()``, ``fail_builds()``,
  ``fail_next()`` (any status, with Retry-After), ``slow_builds()``,
  ``revoke_tokens()``, ``change_password()``, and ``after()`` hooks that run
  once the cloud acted but before the client hears back (to kill it there).

``real_keystone.RealKeystone`` puts the real Keystone (PyPI ``keystone``, run by
the Python that ``TALPROV_KEYSTONE_PYTHON`` names) in front of the fake services.
"""

from talprov.testing.openstack.cloud import FakeOpenStack
from tests.emulators.openstack.fixture import openstack_cloud

__all__ = ["FakeOpenStack", "openstack_cloud"]
