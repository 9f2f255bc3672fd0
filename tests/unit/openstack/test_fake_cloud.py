"""The fake cloud's own shapes, checked with plain HTTP against the API references."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from tests.emulators.openstack import FakeOpenStack


class Api:
    """A bare HTTP client holding a token and the catalog's endpoints."""

    def __init__(self, cloud: FakeOpenStack) -> None:
        self.http = httpx.Client(timeout=10)
        auth = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": cloud.username, "domain": {"name": "Default"},
                "password": cloud.password}}},
            "scope": {"project": {"name": "talos", "domain": {"id": "default"}}}}}
        reply = self.http.post(f"{cloud.auth_url}/auth/tokens", json=auth)
        assert reply.status_code == 201
        self.token = reply.headers["X-Subject-Token"]
        self.catalog = {entry["type"]: entry["endpoints"][0]["url"]
                        for entry in reply.json()["token"]["catalog"]}

    def call(self, method: str, service: str, path: str, *, version: str | None = None,
             **kwargs: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.token, **kwargs.pop("headers", {})}
        if version is not None:
            headers["OpenStack-API-Version"] = f"compute {version}"
        return self.http.request(method, self.catalog[service] + path, headers=headers,
                                 **kwargs)


@pytest.fixture
def api(openstack_cloud: FakeOpenStack) -> Api:
    return Api(openstack_cloud)


def _boot(api: Api, name: str, tags: list[str], **extra: Any) -> str:
    net = api.call("GET", "network", "/v2.0/networks?name=private").json()["networks"][0]
    body = {"server": {"name": name, "flavorRef": "1", "imageRef": _image(api),
                       "networks": [{"uuid": net["id"]}], "tags": tags, **extra}}
    reply = api.call("POST", "compute", "/servers", version="2.52", json=body)
    assert reply.status_code == 202, reply.text
    assert reply.headers["Location"].endswith(reply.json()["server"]["id"])
    return str(reply.json()["server"]["id"])


def _image(api: Api) -> str:
    found = api.call("GET", "image", "/v2/images?name=base").json()["images"]
    if found:
        return str(found[0]["id"])
    image = api.call("POST", "image", "/v2/images", json={
        "name": "base", "disk_format": "raw", "container_format": "bare"}).json()
    api.call("PUT", "image", f"/v2/images/{image['id']}/file", content=b"disk",
             headers={"Content-Type": "application/octet-stream"})
    return str(image["id"])


def test_token_catalog_and_bad_password(openstack_cloud: FakeOpenStack) -> None:
    api = Api(openstack_cloud)
    assert set(api.catalog) == {"identity", "compute", "image", "network"}
    assert all(url.startswith("http://127.0.0.1:") for url in api.catalog.values())
    wrong = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"name": "Default"}, "password": "nope"}}}}}
    reply = httpx.post(f"{openstack_cloud.auth_url}/auth/tokens", json=wrong)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == 401
    assert "X-Subject-Token" not in reply.headers


def test_application_credential_cannot_take_a_scope(openstack_cloud: FakeOpenStack) -> None:
    cred_id, secret = openstack_cloud.add_application_credential()
    identity = {"methods": ["application_credential"],
                "application_credential": {"id": cred_id, "secret": secret}}
    url = f"{openstack_cloud.auth_url}/auth/tokens"
    ok = httpx.post(url, json={"auth": {"identity": identity}})
    assert ok.status_code == 201
    assert ok.json()["token"]["application_credential"]["id"] == cred_id
    scoped = httpx.post(url, json={"auth": {"identity": identity, "scope": {
        "project": {"name": "talos", "domain": {"id": "default"}}}}})
    assert scoped.status_code == 401


def test_requests_without_a_token_are_refused(api: Api) -> None:
    reply = httpx.get(api.catalog["compute"] + "/servers")
    assert reply.status_code == 401


def test_nova_microversions_and_fault_bodies(api: Api) -> None:
    versions = httpx.get(api.catalog["compute"]).json()["version"]
    assert versions["min_version"] == "2.1"
    reply = api.call("GET", "compute", "/flavors/nope", version="2.60")
    assert reply.status_code == 404
    assert reply.json() == {"itemNotFound": {"code": 404,
                                             "message": "Flavor nope could not be found."}}
    assert reply.headers["OpenStack-API-Version"] == "compute 2.60"
    too_new = api.call("GET", "compute", "/flavors", version="9.99")
    assert too_new.status_code == 406
    no_networks = api.call("POST", "compute", "/servers", version="2.37", json={
        "server": {"name": "x", "flavorRef": "1", "imageRef": _image(api)}})
    assert no_networks.status_code == 400
    assert "badRequest" in no_networks.json()
    old_tags = api.call("POST", "compute", "/servers", version="2.51", json={"server": {
        "name": "x", "flavorRef": "1", "imageRef": _image(api), "tags": ["a"]}})
    assert old_tags.status_code == 400


def test_server_tags_filters_metadata_and_user_data(api: Api,
                                                     openstack_cloud: FakeOpenStack) -> None:
    user_data = base64.b64encode(b"#cloud-config\n").decode()
    a = _boot(api, "a", ["x", "y"], user_data=user_data, metadata={"k": "v"})
    b = _boot(api, "b", ["y"])

    def names(query: str) -> set[str]:
        reply = api.call("GET", "compute", f"/servers/detail?{query}", version="2.96")
        return {s["name"] for s in reply.json()["servers"]}

    assert names("tags=x,y") == {"a"}
    assert names("tags-any=x,y") == {"a", "b"}
    assert names("not-tags=x") == {"b"}
    detail = api.call("GET", "compute", f"/servers/{a}", version="2.96").json()["server"]
    assert detail["status"] == "ACTIVE"
    assert detail["metadata"] == {"k": "v"}
    assert detail["flavor"]["original_name"] == "m1.tiny"
    assert detail["addresses"]["private"][0]["OS-EXT-IPS:type"] == "fixed"
    old = api.call("GET", "compute", f"/servers/{a}", version="2.1").json()["server"]
    assert "tags" not in old
    assert old["flavor"]["id"] == "1"
    assert next(s for s in openstack_cloud.servers() if s.id == a).user_data == user_data
    bad = api.call("POST", "compute", "/servers", version="2.96", json={"server": {
        "name": "c", "flavorRef": "1", "imageRef": _image(api), "networks": "none",
        "user_data": "not base64!"}})
    assert bad.status_code == 400
    assert "not base64!" not in bad.text

    assert api.call("PUT", "compute", f"/servers/{b}/tags/z", version="2.26").status_code == 201
    assert api.call("GET", "compute", f"/servers/{b}/tags", version="2.26").json() == {
        "tags": ["y", "z"]}
    assert api.call("GET", "compute", f"/servers/{b}/tags", version="2.25").status_code == 404
    meta = api.call("POST", "compute", f"/servers/{b}/metadata", json={"metadata": {"m": "1"}})
    assert meta.json() == {"metadata": {"m": "1"}}
    assert api.call("DELETE", "compute", f"/servers/{b}").status_code == 204
    gone = api.call("GET", "compute", f"/servers/{b}")
    assert gone.status_code == 404
    assert "itemNotFound" in gone.json()


def test_quota_and_no_valid_host(api: Api, openstack_cloud: FakeOpenStack) -> None:
    openstack_cloud.no_valid_host("az2", count=1)
    failed = _boot(api, "nvh", [], availability_zone="az2")
    server = api.call("GET", "compute", f"/servers/{failed}", version="2.96").json()["server"]
    assert server["status"] == "ERROR"
    assert server["fault"]["code"] == 500
    assert "No valid host was found" in server["fault"]["message"]
    again = _boot(api, "ok", [], availability_zone="az2")
    assert api.call("GET", "compute", f"/servers/{again}").json()["server"]["status"] == "ACTIVE"

    openstack_cloud.set_quota("instances", 2)
    over = api.call("POST", "compute", "/servers", version="2.96", json={"server": {
        "name": "q", "flavorRef": "1", "imageRef": _image(api), "networks": "none"}})
    assert over.status_code == 403
    assert over.json()["forbidden"]["message"].startswith("Quota exceeded for instances")


def test_slow_builds_and_injected_throttling(api: Api, openstack_cloud: FakeOpenStack) -> None:
    openstack_cloud.slow_builds(2)
    server_id = _boot(api, "slow", [])
    statuses = [api.call("GET", "compute", f"/servers/{server_id}").json()["server"]["status"]
                for _ in range(3)]
    assert statuses == ["BUILD", "BUILD", "ACTIVE"]
    openstack_cloud.fail_next("GET", r"/servers/detail$", 429, count=1, retry_after=5)
    throttled = api.call("GET", "compute", "/servers/detail")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "5"
    assert "overLimit" in throttled.json()
    assert api.call("GET", "compute", "/servers/detail").status_code == 200


def test_nova_keeps_callers_ports_and_deletes_its_own(api: Api,
                                                      openstack_cloud: FakeOpenStack) -> None:
    own = _boot(api, "own", [])
    # Nova plugs the network in when the build lands on a host, not at the API call.
    assert openstack_cloud.ports() == []
    api.call("GET", "compute", f"/servers/{own}")
    assert len(openstack_cloud.ports()) == 1
    api.call("DELETE", "compute", f"/servers/{own}")
    assert openstack_cloud.ports() == []
    net_id = openstack_cloud.network_id("private")
    port = api.call("POST", "network", "/v2.0/ports",
                    json={"port": {"network_id": net_id, "tags": ["mine"]}}).json()["port"]
    server = api.call("POST", "compute", "/servers", version="2.96", json={"server": {
        "name": "p", "flavorRef": "1", "imageRef": _image(api),
        "networks": [{"port": port["id"]}]}}).json()["server"]
    api.call("GET", "compute", f"/servers/{server['id']}")
    bound = api.call("GET", "network", f"/v2.0/ports/{port['id']}").json()["port"]
    assert bound["device_id"] == server["id"]
    assert bound["status"] == "ACTIVE"
    in_use = api.call("POST", "compute", "/servers", version="2.96", json={"server": {
        "name": "q", "flavorRef": "1", "imageRef": _image(api),
        "networks": [{"port": port["id"]}]}})
    assert in_use.status_code == 409
    assert "conflictingRequest" in in_use.json()
    api.call("DELETE", "compute", f"/servers/{server['id']}")
    kept = api.call("GET", "network", f"/v2.0/ports/{port['id']}").json()["port"]
    assert kept["device_id"] == ""


def test_neutron_errors_tags_and_over_quota(api: Api, openstack_cloud: FakeOpenStack) -> None:
    missing = api.call("GET", "network", "/v2.0/ports/nope")
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "PortNotFound"
    net_id = openstack_cloud.network_id("private")
    port = api.call("POST", "network", "/v2.0/ports", json={"port": {
        "network_id": net_id, "tags": ["a", "b"]}}).json()["port"]
    assert port["status"] == "DOWN"
    assert port["mac_address"].startswith("fa:16:3e:")
    api.call("POST", "network", "/v2.0/ports", json={"port": {"network_id": net_id,
                                                             "tags": ["b"]}})
    listed = api.call("GET", "network", "/v2.0/ports?tags=a,b").json()["ports"]
    assert [p["id"] for p in listed] == [port["id"]]
    assert len(api.call("GET", "network", "/v2.0/ports?tags-any=a,b").json()["ports"]) == 2
    replaced = api.call("PUT", "network", f"/v2.0/ports/{port['id']}/tags",
                        json={"tags": ["c"]})
    assert replaced.json() == {"tags": ["c"]}
    assert api.call("GET", "network", f"/v2.0/ports/{port['id']}/tags/c").status_code == 204
    assert api.call("DELETE", "network", f"/v2.0/ports/{port['id']}/tags/c").status_code == 204
    openstack_cloud.set_quota("port", 2)
    over = api.call("POST", "network", "/v2.0/ports", json={"port": {"network_id": net_id}})
    assert over.status_code == 409
    assert over.json()["NeutronError"]["type"] == "OverQuota"


def test_neutron_revisions_and_if_match(api: Api, openstack_cloud: FakeOpenStack) -> None:
    extensions = {e["alias"] for e in api.call("GET", "network", "/v2.0/extensions").json()[
        "extensions"]}
    assert {"standard-attr-revisions", "revision-if-match"} <= extensions
    net_id = openstack_cloud.network_id("private")
    port = api.call("POST", "network", "/v2.0/ports", json={"port": {
        "network_id": net_id}}).json()["port"]
    path = f"/v2.0/ports/{port['id']}"
    assert port["revision_number"] == 1

    def revision() -> int:
        return int(api.call("GET", "network", path).json()["port"]["revision_number"])

    assert api.call("PUT", "network", f"{path}/tags/x").status_code == 201
    assert revision() == 2
    renamed = api.call("PUT", "network", path, json={"port": {"name": "n"}},
                       headers={"If-Match": "revision_number=2"})
    assert renamed.json()["port"]["revision_number"] == 3
    stale = api.call("DELETE", "network", path, headers={"If-Match": "revision_number=2"})
    assert stale.status_code == 412
    assert "current revision is 3" in stale.json()["NeutronError"]["message"]
    bad = api.call("DELETE", "network", path, headers={"If-Match": "revision_number=x"})
    assert bad.status_code == 400
    current = api.call("DELETE", "network", path, headers={"If-Match": "revision_number=3"})
    assert current.status_code == 204


def test_glance_upload_properties_and_errors(api: Api) -> None:
    created = api.call("POST", "image", "/v2/images", json={
        "name": "talos", "disk_format": "raw", "container_format": "bare",
        "os_distro": "talos", "hw_firmware_type": "uefi"})
    assert created.status_code == 201
    image = created.json()
    assert image["status"] == "queued"
    assert image["os_distro"] == "talos"
    data = b"\x00" * 4096
    put = api.call("PUT", "image", f"/v2/images/{image['id']}/file", content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 204
    got = api.call("GET", "image", f"/v2/images/{image['id']}").json()
    assert got["status"] == "active"
    assert got["size"] == 4096
    assert got["os_hash_value"] == hashlib.sha512(data).hexdigest()
    again = api.call("PUT", "image", f"/v2/images/{image['id']}/file", content=data,
                     headers={"Content-Type": "application/octet-stream"})
    assert again.status_code == 409
    assert [i["id"] for i in api.call("GET", "image", "/v2/images?os_distro=talos").json()[
        "images"]] == [image["id"]]
    assert api.call("GET", "image", "/v2/images?os_distro=other").json()["images"] == []
    read_only = api.call("POST", "image", "/v2/images", json={"name": "x", "status": "active"})
    assert read_only.status_code == 403
    missing = api.call("GET", "image", "/v2/images/nope")
    assert missing.status_code == 404
    assert missing.text.startswith("404 Not Found")
    assert api.call("DELETE", "image", f"/v2/images/{image['id']}").status_code == 204
