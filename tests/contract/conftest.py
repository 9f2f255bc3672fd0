"""The contract suite's fixtures (one environment per provider type)."""

from tests.contract.environments import (  # noqa: F401 - fixtures
    env,
    env_aws,
    env_baremetal,
    env_file,
    env_openstack,
    env_proxmox,
    env_vmware,
)
from tests.emulators.factory import image_factory  # noqa: F401
from tests.emulators.moto import moto_process, moto_server  # noqa: F401
