"""The Image Factory client against the local stand-in (talprov/testing/factory.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from talprov.providers.errors import (
    MAX_RETRY_AFTER,
    AuthError,
    InvalidRequest,
    NotFound,
    Transient,
)
from talprov.providers.types import MetaValue, Overlay
from talprov.talos.assets import AssetKind, Platform
from talprov.talos.cache import ChecksumMismatch
from talprov.talos.factory import ImageFactory, SchematicIdMismatch, raise_for_status
from talprov.talos.schematic import DEFAULT_SCHEMATIC_ID, Schematic
from tests.emulators.factory import FakeImageFactory, image_factory  # noqa: F401

VERSION = "v1.13.9"


@pytest.fixture
def fake(image_factory: FakeImageFactory) -> FakeImageFactory:  # noqa: F811
    return image_factory


SCHEMATIC = Schematic(
    extra_kernel_args=("console=ttyS0",),
    official_extensions=("siderolabs/iscsi-tools", "siderolabs/qemu-guest-agent"),
)


@pytest.fixture
def client(fake: FakeImageFactory, tmp_path: Path) -> Iterator[ImageFactory]:
    with ImageFactory(
        fake.url,
        tmp_path / "cache",
        cloud_images_url=fake.cloud_images_url_template(),
        timeout=5,
    ) as factory:
        yield factory


def path_of(url: str, fake: FakeImageFactory) -> str:
    return url.removeprefix(fake.url)


def test_register_returns_the_local_id_and_is_idempotent(
    client: ImageFactory,
    fake: FakeImageFactory,
) -> None:
    assert client.register(SCHEMATIC) == SCHEMATIC.id()
    assert client.register(SCHEMATIC) == SCHEMATIC.id()
    assert fake.hits["/schematics"] == 1  # known schematics are not posted again
    # The stand-in computed the id independently and now serves images for it.
    assert SCHEMATIC.id() in fake.schematics


@pytest.mark.parametrize(
    "schematic",
    [
        Schematic(),
        Schematic(overlay=Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic")),
        Schematic(meta=(MetaValue(key=10, value='{"externalIPs":["1.2.3.4"]}'),)),
        Schematic(secureboot_include_well_known_certificates=True, extra_kernel_args=("a=b",)),
    ],
)
def test_stand_in_agrees_on_ids(client: ImageFactory, schematic: Schematic) -> None:
    # The stand-in computes ids with its own code: a disagreement raises SchematicIdMismatch.
    assert client.register(schematic) == schematic.id()


def test_register_detects_an_id_mismatch(client: ImageFactory, fake: FakeImageFactory) -> None:
    fake.id_override = "0" * 64
    with pytest.raises(SchematicIdMismatch) as caught:
        client.register(SCHEMATIC)
    assert SCHEMATIC.id() in str(caught.value)
    assert "0" * 64 in str(caught.value)
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthError), (403, AuthError), (400, InvalidRequest), (503, Transient), (429, Transient)],
)
def test_register_maps_http_errors(
    client: ImageFactory,
    fake: FakeImageFactory,
    status: int,
    error: type[Exception],
) -> None:
    fake.fail_next("/schematics", status)
    with pytest.raises(error):
        client.register(SCHEMATIC)
    assert client.register(SCHEMATIC) == SCHEMATIC.id()  # the next attempt goes through


def test_timeouts_are_transient(tmp_path: Path) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    factory = ImageFactory("http://127.0.0.1:9", tmp_path, transport=httpx.MockTransport(timeout))
    with pytest.raises(Transient):
        factory.register(SCHEMATIC)
    with pytest.raises(Transient):
        factory.download(factory.kernel_url(DEFAULT_SCHEMATIC_ID, VERSION, "amd64"))


def test_asset_urls(client: ImageFactory, fake: FakeImageFactory) -> None:
    sid, base = SCHEMATIC.id(), fake.url
    prefix = f"{base}/image/{sid}/{VERSION}"
    assert client.image_url(sid, VERSION, "aws", "amd64") == f"{prefix}/aws-amd64.raw.xz"
    assert client.image_url(sid, VERSION, Platform.AWS, "arm64") == f"{prefix}/aws-arm64.raw.xz"
    assert client.image_url(sid, VERSION, "vmware", "amd64") == f"{prefix}/vmware-amd64.ova"
    assert (
        client.image_url(sid, VERSION, "openstack", "arm64") == f"{prefix}/openstack-arm64.raw.xz"
    )
    assert client.image_url(sid, VERSION, "nocloud", "amd64") == f"{prefix}/nocloud-amd64.iso"
    assert client.image_url(sid, VERSION, "metal", "amd64") == f"{prefix}/metal-amd64.iso"
    assert (
        client.image_url(sid, VERSION, "metal", "amd64", True)
        == f"{prefix}/metal-amd64-secureboot.iso"
    )
    assert client.image_url(
        sid, VERSION, "nocloud", "arm64", secure_boot=True, kind=AssetKind.DISK
    ) == (f"{prefix}/nocloud-arm64-secureboot.raw.xz")
    assert client.kernel_url(sid, VERSION, "amd64") == f"{prefix}/kernel-amd64"
    assert client.initramfs_url(sid, VERSION, "arm64") == f"{prefix}/initramfs-arm64.xz"
    assert client.pxe_script_url(sid, VERSION, "amd64") == f"{base}/pxe/{sid}/{VERSION}/metal-amd64"
    assert client.pxe_script_url(sid, VERSION, "arm64", secure_boot=True).endswith(
        "/metal-arm64-secureboot"
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("aws", "amd64", True), "secure_boot"),
        (("openstack", "amd64", True), "secure_boot"),
        (("gcp", "amd64", False), None),
    ],
)
def test_assets_the_factory_does_not_build_are_refused(
    client: ImageFactory, args: tuple[str, str, bool], field: str | None
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.image_url(DEFAULT_SCHEMATIC_ID, VERSION, *args)
    assert caught.value.field == field


def test_ids_and_versions_are_checked_before_building_paths(client: ImageFactory) -> None:
    with pytest.raises(InvalidRequest):
        client.image_url("../../etc", VERSION, "aws", "amd64")
    with pytest.raises(InvalidRequest):
        client.image_url(DEFAULT_SCHEMATIC_ID, "latest/../x", "aws", "amd64")


def test_download_caches_and_second_call_needs_no_network(
    client: ImageFactory,
    fake: FakeImageFactory,
    tmp_path: Path,
) -> None:
    url = client.image_url(client.register(SCHEMATIC), VERSION, "aws", "amd64")
    seen: list[tuple[int, int | None]] = []
    path = client.download(url, progress=lambda task, done, total: seen.append((done, total)))
    assert path.name.endswith("aws-amd64.raw.xz")
    assert client.sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert client.download(url) == path
    # Another client (another process, later) on the same cache: still no request.
    with ImageFactory(fake.url, tmp_path / "cache") as other:
        assert other.download(url) == path
    asset = path_of(url, fake)
    fake.stop()  # nothing can be fetched any more, the cache still answers
    assert client.download(url, expected_sha256=client.sha256(path)) == path
    assert fake.hits[asset] == 1


def test_download_resumes_after_a_dropped_connection(
    client: ImageFactory,
    fake: FakeImageFactory,
) -> None:
    url = client.image_url(client.register(SCHEMATIC), VERSION, "openstack", "amd64")
    path = path_of(url, fake)
    fake.drop_next(path, after_bytes=60_000)
    downloaded = client.download(url)
    assert fake.hits[path] == 2
    assert fake.ranges == [(path, "bytes=60000-")]
    whole = httpx.get(url).content
    assert downloaded.read_bytes() == whole
    assert client.sha256(downloaded) == hashlib.sha256(whole).hexdigest()


def test_download_gives_up_after_repeated_drops(
    client: ImageFactory, fake: FakeImageFactory
) -> None:
    url = client.kernel_url(DEFAULT_SCHEMATIC_ID, VERSION, "amd64")
    fake.drop_next(path_of(url, fake), after_bytes=0, times=10)
    with pytest.raises(Transient) as caught:
        client.download(url)
    assert "interrupted" in str(caught.value)


def test_checksum_mismatch_keeps_nothing(client: ImageFactory, fake: FakeImageFactory) -> None:
    url = client.initramfs_url(DEFAULT_SCHEMATIC_ID, VERSION, "amd64")
    with pytest.raises(ChecksumMismatch) as caught:
        client.download(url, expected_sha256="ab" * 32)
    assert isinstance(caught.value, Transient)
    assert client.cache.cached(url) is None
    assert not any(p.name.endswith(".part") for p in client.cache_dir.iterdir())
    right = hashlib.sha256(httpx.get(url).content).hexdigest()
    assert client.sha256(client.download(url, expected_sha256=right.upper())) == right


def test_a_cached_file_with_other_bytes_is_fetched_again(
    client: ImageFactory,
    fake: FakeImageFactory,
) -> None:
    url = client.kernel_url(DEFAULT_SCHEMATIC_ID, VERSION, "amd64")
    client.download(url)
    with pytest.raises(ChecksumMismatch):
        client.download(url, expected_sha256="cd" * 32)
    assert fake.hits[path_of(url, fake)] == 2
    assert client.cache.cached(url) is None


def test_concurrent_threads_download_once(client: ImageFactory, fake: FakeImageFactory) -> None:
    url = client.image_url(client.register(SCHEMATIC), VERSION, "nocloud", "amd64")
    results: list[Path] = []
    barrier = threading.Barrier(4)

    def fetch() -> None:
        barrier.wait()
        results.append(client.download(url))

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4
    assert len(set(results)) == 1
    assert fake.hits[path_of(url, fake)] == 1


def test_concurrent_processes_download_once(fake: FakeImageFactory, tmp_path: Path) -> None:
    url = f"{fake.url}/image/{DEFAULT_SCHEMATIC_ID}/{VERSION}/aws-arm64.raw.xz"
    script = (
        "import sys, pathlib\n"
        "from talprov.talos.factory import ImageFactory\n"
        "f = ImageFactory(sys.argv[1], pathlib.Path(sys.argv[2]))\n"
        "print(f.download(sys.argv[3]))\n"
    )
    argv = [sys.executable, "-c", script, fake.url, str(tmp_path / "shared"), url]
    fake.body_delay = 0.5  # the first one holds the lock while the others arrive
    root = Path(__file__).resolve().parents[3]
    workers = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=root) for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert len(set(outputs)) == 1
    assert Path(outputs[0]).exists()
    assert fake.hits[path_of(url, fake)] == 1


@pytest.mark.parametrize(
    ("status", "error"), [(401, AuthError), (403, AuthError), (500, Transient)]
)
def test_download_maps_http_errors(
    client: ImageFactory,
    fake: FakeImageFactory,
    status: int,
    error: type[Exception],
) -> None:
    url = client.kernel_url(DEFAULT_SCHEMATIC_ID, VERSION, "arm64")
    fake.fail_next(path_of(url, fake), status)
    with pytest.raises(error):
        client.download(url)
    assert client.download(url).exists()


def test_missing_assets_are_not_found_and_named(client: ImageFactory) -> None:
    unknown_schematic = "f" * 64  # never registered with the stand-in
    url = client.image_url(unknown_schematic, VERSION, "aws", "amd64")
    with pytest.raises(NotFound) as caught:
        client.download(url)
    assert "aws-amd64.raw.xz" in str(caught.value)


def test_credentials_in_the_base_url_stay_out_of_errors(
    fake: FakeImageFactory,
    tmp_path: Path,
) -> None:
    base = fake.url.replace("http://", "http://user:CANARY-pw@")
    with ImageFactory(base, tmp_path) as factory:
        url = factory.image_url("e" * 64, VERSION, "aws", "amd64")
        with pytest.raises(NotFound) as caught:
            factory.download(url)
        assert "CANARY-pw" not in str(caught.value)
        assert "CANARY-pw" not in repr(factory)


def test_cloud_images_and_official_amis(client: ImageFactory, fake: FakeImageFactory) -> None:
    fake.cloud_images[VERSION] = [
        {
            "cloud": "aws",
            "version": VERSION,
            "region": "eu-west-1",
            "arch": "amd64",
            "type": "hvm",
            "id": "ami-1",
        },
        {
            "cloud": "aws",
            "version": VERSION,
            "region": "eu-west-1",
            "arch": "arm64",
            "type": "hvm",
            "id": "ami-2",
        },
        {
            "cloud": "gcp",
            "version": VERSION,
            "region": "eu-west-1",
            "arch": "amd64",
            "type": "x",
            "id": "img-3",
        },
    ]
    images = client.cloud_images(VERSION)
    assert [(i.cloud, i.region, i.arch, i.id) for i in images] == [
        ("aws", "eu-west-1", "amd64", "ami-1"),
        ("aws", "eu-west-1", "arm64", "ami-2"),
        ("gcp", "eu-west-1", "amd64", "img-3"),
    ]
    assert client.official_ami(VERSION, "eu-west-1", "arm64") == "ami-2"
    assert client.official_ami(VERSION, "ap-south-2", "amd64") is None
    assert client.official_ami(VERSION, "us-east-1", "amd64") is None
    assert fake.hits[f"/releases/{VERSION}/cloud-images.json"] == 1


def test_malformed_cloud_images_are_transient(client: ImageFactory, fake: FakeImageFactory) -> None:
    fake.cloud_images["v1.9.0"] = [{"cloud": "aws"}]  # no region, arch, id
    with pytest.raises(Transient):
        client.cloud_images("v1.9.0")
    with pytest.raises(NotFound):
        ImageFactory(
            fake.url,
            client.cache_dir,
            cloud_images_url=fake.url + "/nope/{version}.json",
        ).cloud_images(VERSION)


def test_default_cloud_images_come_from_the_release(
    client: ImageFactory, fake: FakeImageFactory
) -> None:
    entries = json.loads(
        client.download(fake.cloud_images_url_template().format(version=VERSION)).read_text()
    )
    assert {e["region"] for e in entries} >= {"eu-west-1", "us-east-1"}
    expected = next(e["id"] for e in entries if (e["region"], e["arch"]) == ("us-east-1", "amd64"))
    assert client.official_ami(VERSION, "us-east-1", "amd64") == expected


@pytest.mark.parametrize(("header", "expected"), [
    ("7", 7.0),
    ("99999999", MAX_RETRY_AFTER),  # before: a broken proxy's value parked work for years
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # an HTTP-date in the past: go now
    ("soon", None),
])
def test_a_busy_factorys_retry_after_is_bounded_and_read_in_both_forms(
        header: str, expected: float | None) -> None:
    response = httpx.Response(503, headers={"retry-after": header},
                              request=httpx.Request("POST", "https://factory.test/schematics"))
    with pytest.raises(Transient) as caught:
        raise_for_status(response, "register schematic")
    assert caught.value.retry_after == expected
