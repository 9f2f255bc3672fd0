"""talprov: Talos Linux machines on AWS, Proxmox VE, vSphere, OpenStack and bare metal."""

__version__ = "0.1.0"
