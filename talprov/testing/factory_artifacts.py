"""Small, deterministic artifacts in the formats the Image Factory serves (for its stand-in).

A raw MBR disk (xz), an OVA (OVF descriptor, manifest, streamOptimized VMDK that
``qemu-img check`` accepts), an ISO 9660 image (``isoinfo`` reads it), an x86/arm64
kernel stub, a newc-cpio initramfs (xz with CRC32, as the kernel requires), iPXE
scripts and cloud-images.json entries. Each is generated once per process.
"""

from __future__ import annotations

import functools
import hashlib
import io
import lzma
import random
import re
import struct
import tarfile

SECTOR = 512
ISO_BLOCK = 2048
FIXED_TIME = 1_700_000_000


def _noise(size: int, seed: str) -> bytes:
    # deterministic, and not trivially compressible; no secret involved
    return random.Random(seed).randbytes(size)  # noqa: S311


@functools.cache
def raw_disk(seed: str) -> bytes:
    """A 1 MiB disk: an MBR with one Linux partition (LBA 64-2047), partly filled."""
    image = bytearray(2048 * SECTOR)
    entry = struct.pack("<B3sB3sII", 0x80, b"\x00\x02\x00", 0x83, b"\xfe\xff\xff", 64, 2048 - 64)
    image[446:462] = entry
    image[510:512] = b"\x55\xaa"
    image[64 * SECTOR : 64 * SECTOR + 192 * 1024] = _noise(192 * 1024, seed)
    return bytes(image)


@functools.cache
def raw_xz(seed: str) -> bytes:
    return lzma.compress(raw_disk(seed), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)


def _both16(value: int) -> bytes:
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value: int) -> bytes:
    return struct.pack("<I", value) + struct.pack(">I", value)


def _dir_record(name: bytes, extent: int, size: int, is_dir: bool) -> bytes:
    length = 33 + len(name) + (1 - len(name) % 2)
    record = struct.pack("<BB", length, 0) + _both32(extent) + _both32(size)
    record += bytes([123, 11, 14, 22, 13, 20, 0])  # 2023-11-14 22:13:20 UTC
    record += bytes([2 if is_dir else 0, 0, 0]) + _both16(1) + bytes([len(name)]) + name
    return record.ljust(length, b"\x00")


@functools.cache
def iso9660(label: str, files: tuple[tuple[str, bytes], ...]) -> bytes:
    """An ISO 9660 (level 1) image holding ``files`` in its root directory."""
    root_extent, first_file = 20, 21
    extents, position = [], first_file
    for _, data in files:
        extents.append(position)
        position += max(1, -(-len(data) // ISO_BLOCK))
    total = position
    root = _dir_record(b"\x00", root_extent, ISO_BLOCK, True) + _dir_record(
        b"\x01", root_extent, ISO_BLOCK, True
    )
    for (name, data), extent in zip(files, extents, strict=True):
        root += _dir_record(name.upper().encode() + b";1", extent, len(data), False)
    path_entry_le = struct.pack("<BBIH", 1, 0, root_extent, 1) + b"\x00\x00"
    path_entry_be = struct.pack(">BBIH", 1, 0, root_extent, 1) + b"\x00\x00"
    pvd = bytearray(ISO_BLOCK)
    pvd[0:8] = b"\x01CD001\x01\x00"
    pvd[8:40] = b"LINUX".ljust(32)
    pvd[40:72] = label.upper().encode()[:32].ljust(32)
    pvd[80:88] = _both32(total)
    pvd[120:124] = _both16(1)
    pvd[124:128] = _both16(1)
    pvd[128:132] = _both16(ISO_BLOCK)
    pvd[132:140] = _both32(len(path_entry_le))
    pvd[140:144] = struct.pack("<I", 18)
    pvd[148:152] = struct.pack(">I", 19)
    pvd[156:190] = _dir_record(b"\x00", root_extent, ISO_BLOCK, True)
    pvd[190:813] = b" " * (813 - 190)
    for offset in (813, 830, 847, 864):
        pvd[offset : offset + 17] = b"0" * 16 + b"\x00"
    pvd[881] = 1
    terminator = b"\xffCD001\x01".ljust(ISO_BLOCK, b"\x00")
    image = bytearray(16 * ISO_BLOCK) + pvd + terminator
    image += path_entry_le.ljust(ISO_BLOCK, b"\x00") + path_entry_be.ljust(ISO_BLOCK, b"\x00")
    image += root.ljust(ISO_BLOCK, b"\x00")
    for _, data in files:
        image += data.ljust(max(1, -(-len(data) // ISO_BLOCK)) * ISO_BLOCK, b"\x00")
    return bytes(image)


def _marker(sectors: int, kind: int) -> bytes:
    return struct.pack("<QII", sectors, 0, kind).ljust(SECTOR, b"\x00")


def _vmdk_header(capacity: int, descriptor_sectors: int, gd_offset: int) -> bytes:
    header = struct.pack(
        "<4sIIQQQQIQQQBccccH",
        b"KDMV",
        3,
        0x30001,
        capacity,
        128,
        1,
        descriptor_sectors,
        512,
        0,
        gd_offset,
        1 + descriptor_sectors,
        0,
        b"\n",
        b" ",
        b"\r",
        b"\n",
        1,
    )
    return header.ljust(SECTOR, b"\x00")


@functools.cache
def stream_optimized_vmdk(capacity_sectors: int = 131072) -> bytes:
    """An empty streamOptimized VMDK (no grains allocated): header, descriptor, GD, footer."""
    descriptor = (
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="streamOptimized"\n\n# Extent description\n'
        f'RDONLY {capacity_sectors} SPARSE "disk.vmdk"\n\n# The Disk Data Base\n#DDB\n\n'
        'ddb.adapterType = "lsilogic"\nddb.virtualHWVersion = "4"\n'
    ).encode()
    descriptor_sectors = -(-len(descriptor) // SECTOR)
    grain_tables = -(-capacity_sectors // (128 * 512))
    gd_sectors = -(-grain_tables * 4 // SECTOR)
    gd_offset = 1 + descriptor_sectors + 1  # right after the GD marker
    body = _vmdk_header(capacity_sectors, descriptor_sectors, 0xFFFFFFFFFFFFFFFF)
    body += descriptor.ljust(descriptor_sectors * SECTOR, b"\x00")
    body += _marker(gd_sectors, 2) + bytes(gd_sectors * SECTOR)
    body += _marker(1, 3) + _vmdk_header(capacity_sectors, descriptor_sectors, gd_offset)
    return body + _marker(0, 0)


def _ovf(disk_name: str, disk_size: int, capacity_bytes: int) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
 xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
 xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="{disk_name}" ovf:id="file1" ovf:size="{disk_size}"/></References>
  <DiskSection><Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity_bytes}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1"
     ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="talos">
    <Info>A virtual machine</Info><Name>talos</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other3xLinux64Guest"><Info>OS</Info>
      </OperatingSystemSection>
    <VirtualHardwareSection><Info>Virtual hardware requirements</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>talos</vssd:VirtualSystemIdentifier>
          <vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
          <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>2048MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
          <rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
          <rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
          <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
          <rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
""".encode()


@functools.cache
def ova(arch: str) -> bytes:
    """A tar holding the OVF descriptor first, then the manifest and the VMDK (as OVA requires)."""
    disk_name = f"talos-{arch}-disk1.vmdk"
    disk = stream_optimized_vmdk()
    ovf = _ovf(disk_name, len(disk), 131072 * SECTOR)
    manifest = "".join(
        f"SHA256({name})= {hashlib.sha256(data).hexdigest()}\n"
        for name, data in ((f"talos-{arch}.ovf", ovf), (disk_name, disk))
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in (
            (f"talos-{arch}.ovf", ovf),
            (f"talos-{arch}.mf", manifest),
            (disk_name, disk),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), FIXED_TIME, 0o644
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _cpio_entry(name: str, data: bytes, mode: int) -> bytes:
    encoded = name.encode() + b"\x00"
    fields = (0, mode, 0, 0, 1, FIXED_TIME, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + "".join(f"{f:08X}" for f in fields).encode()
    entry = header + encoded
    entry += b"\x00" * (-len(entry) % 4)
    return entry + data + b"\x00" * (-len(data) % 4)


@functools.cache
def initramfs_xz(arch: str) -> bytes:
    archive = _cpio_entry(
        "init", f"#!/bin/sh\necho talos test initramfs {arch}\n".encode(), 0o100755
    )
    archive += _cpio_entry("TRAILER!!!", b"", 0)
    return lzma.compress(archive, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)


@functools.cache
def kernel(arch: str) -> bytes:
    image = bytearray(8192)
    if arch == "arm64":
        image[0x38:0x3C] = b"ARM\x64"  # arm64 Image header magic
    else:
        image[0x1FE:0x200] = b"\x55\xaa"
        image[0x202:0x206] = b"HdrS"  # x86 boot protocol header
    image[4096:] = _noise(4096, f"kernel-{arch}")
    return bytes(image)


def pxe_script(
    base_url: str, schematic: str, version: str, arch: str, extra_args: tuple[str, ...]
) -> bytes:
    args = " ".join(("talos.platform=metal", "console=tty0", "printk.devkmsg=on", *extra_args))
    prefix = f"{base_url}/image/{schematic}/{version}"
    return (
        f"#!ipxe\n\nimgfree\nkernel {prefix}/kernel-{arch} {args}\n"
        f"initrd {prefix}/initramfs-{arch}.xz\nboot\n"
    ).encode()


def default_cloud_images(version: str) -> list[dict[str, str]]:
    """Official-AMI entries shaped like a Talos release's cloud-images.json."""
    entries = []
    for region in ("eu-west-1", "us-east-1", "us-west-2"):
        for arch in ("amd64", "arm64"):
            digest = hashlib.sha256(f"{version}/{region}/{arch}".encode()).hexdigest()
            entries.append(
                {
                    "cloud": "aws",
                    "version": version,
                    "region": region,
                    "arch": arch,
                    "type": "hvm",
                    "id": f"ami-{digest[:17]}",
                }
            )
    return entries


def artifact(asset: str, seed: str) -> bytes | None:
    """The generated bytes for an asset name, or None for names the fake does not serve."""
    match = re.fullmatch(
        r"(aws|openstack|nocloud|metal|vmware)-(amd64|arm64)(-secureboot)?\.(raw\.xz|iso|ova)",
        asset,
    )
    if match:
        platform, arch, _, suffix = match.groups()
        if suffix == "raw.xz":
            return raw_xz(f"{seed}/{asset}")
        if suffix == "ova":
            return (
                ova(arch)
                if platform == "vmware" and arch == "amd64" and not match.group(3)
                else None
            )
        readme = f"Talos test ISO for {platform} {arch}\n".encode()
        return iso9660(f"TALOS_{arch}", (("README.TXT", readme),))
    if asset in ("kernel-amd64", "kernel-arm64"):
        return kernel(asset.split("-")[1])
    if asset in ("initramfs-amd64.xz", "initramfs-arm64.xz"):
        return initramfs_xz(asset.removeprefix("initramfs-").removesuffix(".xz"))
    return None
