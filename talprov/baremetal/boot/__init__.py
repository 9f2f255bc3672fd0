"""The boot server: DHCP proxy, TFTP for iPXE binaries, HTTP boot scripts and configs."""
