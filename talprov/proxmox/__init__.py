"""Proxmox VE driver: Talos nocloud ISO, one VM per request, cloud-init seed ISO."""
