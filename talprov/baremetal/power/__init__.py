"""Power control of bare-metal machines through their BMC (IPMI or Redfish)."""
