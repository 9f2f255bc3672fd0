"""An administrator's view of vcsim's vAPI (``/rest``) with plain httpx, independent of the driver.

Tests use it to set up what an administrator would (tag categories and tags, a
content library with an OVF item) and to look at the result (tags attached to a VM).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from talprov.testing.factory_artifacts import ova
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.observe import connect


class VapiAdmin:
    """A logged-in REST session to vcsim (TLS verified with the fixture's certificate)."""

    def __init__(self, server: VcsimServer) -> None:
        self.server = server
        context = ssl.create_default_context(cafile=str(server.ca_file))
        base = server.url.removesuffix("/sdk") + "/rest"
        self.http = httpx.Client(base_url=base, verify=context, trust_env=False, timeout=10)
        answer = self.http.post("/com/vmware/cis/session", auth=(server.user, server.password),
                                headers={"vmware-use-header-authn": "true"})
        answer.raise_for_status()
        self.http.headers["vmware-api-session-id"] = answer.json()["value"]

    def call(self, method: str, path: str, action: str | None = None,
             body: Any = None) -> Any:
        params = {"~action": action} if action else {}
        answer = self.http.request(method, path, params=params, json=body)
        answer.raise_for_status()
        return answer.json().get("value") if answer.content else None

    def category(self, name: str) -> str:
        return str(self.call("POST", "/com/vmware/cis/tagging/category", body={"create_spec": {
            "name": name, "description": "", "cardinality": "MULTIPLE",
            "associable_types": []}}))

    def tag(self, category_id: str, name: str) -> str:
        return str(self.call("POST", "/com/vmware/cis/tagging/tag", body={"create_spec": {
            "name": name, "description": "", "category_id": category_id}}))

    def attached_tags(self, moid: str) -> list[str]:
        return list(self.call("POST", "/com/vmware/cis/tagging/tag-association",
                              "list-attached-tags",
                              {"object_id": {"type": "VirtualMachine", "id": moid}}) or [])

    def datastore_id(self, name: str) -> str:
        from pyVmomi import vim

        with connect(self.server) as si:
            view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                              [vim.Datastore], True)
            try:
                return str(next(ds._moId for ds in view.view if ds.name == name))
            finally:
                view.Destroy()

    def library(self, name: str, datastore: str = "LocalDS_0") -> str:
        return str(self.call("POST", "/com/vmware/content/local-library", body={"create_spec": {
            "name": name, "type": "LOCAL",
            "storage_backings": [{"datastore_id": self.datastore_id(datastore),
                                  "type": "DATASTORE"}]}}))

    def ova_item(self, library_id: str, name: str) -> str:
        """An OVF item holding the Talos test OVA (uploaded through an update session)."""
        item = str(self.call("POST", "/com/vmware/content/library/item", body={"create_spec": {
            "library_id": library_id, "name": name, "type": "ovf"}}))
        session = self.call("POST", "/com/vmware/content/library/item/update-session",
                            body={"create_spec": {"library_item_id": item}})
        added = self.call("POST", f"/com/vmware/content/library/item/updatesession/file/"
                          f"id:{session}", "add",
                          {"file_spec": {"name": "talos.ova", "source_type": "PUSH"}})
        self.http.put(added["upload_endpoint"]["uri"], content=ova("amd64")).raise_for_status()
        self.call("POST", f"/com/vmware/content/library/item/update-session/id:{session}",
                  "complete")
        return item

    def item_of_type(self, library_id: str, name: str, kind: str) -> str:
        return str(self.call("POST", "/com/vmware/content/library/item", body={"create_spec": {
            "library_id": library_id, "name": name, "type": kind}}))

    def close(self) -> None:
        self.http.close()


@contextmanager
def vapi_admin(server: VcsimServer) -> Iterator[VapiAdmin]:
    admin = VapiAdmin(server)
    try:
        yield admin
    finally:
        admin.close()
