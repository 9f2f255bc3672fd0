"""Bare-metal machines: inventory, BMC power control, PXE/iPXE boot server."""
