"""vSphere in ``talprov demo``, on govmomi's vcsim.

There is no Image Factory in the demo, so instead of importing the factory OVA
the driver clones a template the demo makes from one of vcsim's sample VMs
(provider_data ``template``); the machine config reaches vCenter as
``guestinfo.talos.config``, as on a real one.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talprov.demo_platforms.common import (
    EmulatorProcess,
    Row,
    file_ref,
    start_emulator,
    write_secret,
)
from talprov.store.records import RequestRecord

VCSIM_USER = "administrator@vsphere.local"
#: One of the sample VMs of vcsim's default (VPX) inventory, in cluster DC0_C0.
SAMPLE_VM = "DC0_C0_RP0_VM0"
TEMPLATE = "talos-demo-template"


def start_vcsim(binary: Path, folder: Path, user: str, password: str,
                ca_file: Path, method_delays: Mapping[str, int] | None = None,
                ) -> tuple[EmulatorProcess, str]:
    """Start vcsim (VPX model) on 127.0.0.1; the process and its SDK URL.

    It writes its certificate to ``ca_file`` and its output to
    ``folder/vcsim.log``. ``method_delays``: milliseconds a SOAP method takes
    (e.g. ``{"CloneVM_Task": 1000}``). Raises ``RuntimeError`` when it does not come up.
    """
    command = [str(binary), "-listen", "127.0.0.1", "-port", "0", "-username", user,
               "-password", password, "-cert", str(ca_file)]
    if method_delays:  # only then: a binary built before the flag existed still starts
        command += ["-method-delay",
                    ",".join(f"{name}={ms}" for name, ms in sorted(method_delays.items()))]
    return start_emulator("vcsim", command, folder / "vcsim.log", "vcsim listening on ")


def _wait_task(task: Any) -> None:
    from pyVim import task as pyvim_task

    wait: Any = pyvim_task.WaitForTask
    wait(task)


class VSphereDemo:
    """vSphere on vcsim: VMs cloned from a template, their config in guestinfo."""

    name = "vmware"
    provider = "vmware-demo"

    def __init__(self, emulator: EmulatorProcess, url: str, password_file: Path,
                 ca_file: Path) -> None:
        self.emulator = emulator
        self.url = url
        self.password_file = password_file
        self.ca_file = ca_file

    def __repr__(self) -> str:
        return f"VSphereDemo({self.url})"

    @classmethod
    def start(cls, folder: Path, binary: Path) -> VSphereDemo:
        """Start vcsim (its certificate written to a file, so TLS stays verified) and
        make a template from a sample VM. Raises ``RuntimeError``; vcsim is stopped then.
        """
        password = secrets.token_urlsafe(18)
        password_file = write_secret(folder / "password", password)
        ca_file = folder / "vcsim.pem"
        emulator, url = start_vcsim(binary, folder, VCSIM_USER, password, ca_file)
        demo = cls(emulator, url, password_file, ca_file)
        try:
            demo.make_template(password)
        except Exception as exc:
            emulator.stop()
            # pyVmomi's faults carry no message worth more than their name.
            raise RuntimeError(f"making the template in vcsim failed: {type(exc).__name__}") \
                from None
        except BaseException:
            emulator.stop()
            raise
        return demo

    def _connect(self, password: str) -> Any:
        from urllib.parse import urlsplit

        from pyVim import connect

        smart_connect: Any = connect.SmartConnect
        parts = urlsplit(self.url)
        return smart_connect(host=parts.hostname, port=parts.port, user=VCSIM_USER,
                             pwd=password, sslContext=ssl.create_default_context(
                                 cafile=str(self.ca_file)))

    def _password(self) -> str:
        return self.password_file.read_text()

    def make_template(self, password: str) -> None:
        """Clone the sample VM into the template the demo's machines are cloned from."""
        from talprov.vmware import sdk

        vim = sdk.vim()
        si = self._connect(password)
        try:
            content = si.content
            view = content.viewManager.CreateContainerView(content.rootFolder,
                                                           [vim.VirtualMachine], True)
            try:
                sample = next(vm for vm in view.view if vm.name == SAMPLE_VM)
            finally:
                view.Destroy()
            spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=sample.resourcePool),
                                    template=True)
            _wait_task(sample.CloneVM_Task(sample.parent, TEMPLATE, spec))
        finally:
            si.content.sessionManager.Logout()

    def provider_block(self) -> dict[str, Any]:
        return {"type": "vmware", "url": self.url, "username": VCSIM_USER,
                "password": file_ref(self.password_file), "ca_file": str(self.ca_file),
                "poll_interval": 0.5, "concurrency": 8}

    def machine_class(self) -> dict[str, Any]:
        return {"kind": "MachineClass", "name": "vmware-small", "provider": self.provider,
                "provider_data": {"cluster": "DC0_C0", "template": TEMPLATE, "cpu": 2,
                                  "memory": 2048}}

    def verify(self, records: list[RequestRecord]) -> list[dict[str, Any]]:
        """Each VM as vCenter reports it: guestinfo config (base64), disk UUIDs, power."""
        si = self._connect(self._password())
        try:
            rows = []
            for record in records:
                row = Row(self.name, record)
                if record.infra_id:
                    self._check_vm(si, row, record.infra_id)
                rows.append(row.as_dict())
            return rows
        finally:
            si.content.sessionManager.Logout()

    def _check_vm(self, si: Any, row: Row, moid: str) -> None:
        import base64
        import binascii

        from talprov.talos.encoders import GUESTINFO_CONFIG
        from talprov.talos.join import user_data_for
        from talprov.vmware import sdk

        vm = sdk.vim().VirtualMachine(moid, si._stub)
        try:
            extra = {o.key: str(o.value) for o in vm.config.extraConfig or ()}
            row.state = str(vm.runtime.powerState)
            row.where = str(vm.runtime.host.name)
            row.address = vm.guest.ipAddress
        except sdk.vmodl().fault.ManagedObjectNotFound:
            return
        request = row.record.request
        wanted = user_data_for(request)
        try:
            sent = base64.b64decode(extra.get(GUESTINFO_CONFIG, ""), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            sent = None
        config_ok = sent == wanted
        uuid_ok = extra.get("disk.enableUUID") == "TRUE"
        row.config = "matches config" if config_ok else "MISMATCH"
        row.check = "disk.enableUUID" if uuid_ok else "MISMATCH"
        row.ok = config_ok and uuid_ok and row.state == "poweredOn"

    def stop(self) -> None:
        self.emulator.stop()

    def pid(self) -> int:
        return self.emulator.process.pid

    def keep_hint(self) -> str:
        return (f"vcsim at {self.url} (pid {self.emulator.process.pid}, user {VCSIM_USER}, "
                f"password in {self.password_file})")
