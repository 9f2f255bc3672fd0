"""The contract suite's fixtures (one environment per provider type)."""

from tests.contract.environments import env, env_file, env_proxmox  # noqa: F401
from tests.emulators.factory import image_factory  # noqa: F401
