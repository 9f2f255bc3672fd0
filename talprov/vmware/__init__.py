"""The VMware vSphere provider (pyvmomi): the Talos OVA imported once, cloned per machine."""
