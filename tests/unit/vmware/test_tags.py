"""provider_data.tags against vcsim's vAPI over HTTPS: resolved, attached once, errors named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from talprov.providers.errors import AuthError, InvalidRequest
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision, run_step
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import PLACEMENT, machine_request
from tests.unit.vmware.vapi_admin import VapiAdmin


def _count_rest_calls(provider: VSphereProvider) -> list[str]:
    calls: list[str] = []
    original = provider.vapi.call

    def counting(what: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(what)
        return original(what, *args, **kwargs)

    provider.vapi.call = counting  # type: ignore[method-assign]
    return calls


def test_tags_by_name_and_id_are_attached_once_and_visible_on_the_vm(
    provider: VSphereProvider, admin: VapiAdmin, owner: Owner, clock: FakeClock,
) -> None:
    env = admin.category("env")
    prod = admin.tag(env, "prod")
    admin.tag(env, "staging")  # a tag of the same category that must not be attached
    team = admin.category("team")
    platform = admin.tag(team, "platform")
    request = machine_request("t1", provider_data={
        **PLACEMENT, "tags": ["env:prod", platform, "env:prod"]})
    ctx = context(provider, request, owner)
    provision(provider, [ctx], clock)

    moid = ctx.state.vm_moid
    assert moid is not None
    assert sorted(admin.attached_tags(moid)) == sorted([prod, platform])

    # Re-running the step (a crash before the runner stored its end) changes nothing.
    calls = _count_rest_calls(provider)
    tag_step = next(s for s in provider.steps() if s.name == "tag-vm")
    run_step(tag_step, ctx, clock)
    assert calls == [f"list tags of VM {moid}"]  # names cached; nothing left to attach
    assert sorted(admin.attached_tags(moid)) == sorted([prod, platform])


def test_a_tag_created_later_is_found_with_one_fresh_listing(
    provider: VSphereProvider, admin: VapiAdmin, owner: Owner, clock: FakeClock,
) -> None:
    env = admin.category("env")
    admin.tag(env, "prod")
    assert provider.tagger.resolve(["env:prod"])
    late = admin.tag(env, "late")
    calls = _count_rest_calls(provider)
    assert provider.tagger.resolve(["env:prod", "env:late"])[1] == late
    assert calls.count("list tag categories") == 1
    calls.clear()
    provider.tagger.resolve(["env:late"])
    assert calls == []  # cached per provider instance


@pytest.mark.parametrize(("tags", "field", "match"), [
    (["env:prod", "env:nope"], "provider_data.tags[1]", "no tag 'nope' in category 'env'"),
    (["nocat:prod"], "provider_data.tags[0]", "no tag category 'nocat'"),
    (["env:prod", "urn:vmomi:InventoryServiceTag:0000:GLOBAL"], "provider_data.tags[1]",
     "no tag with id"),
])
def test_an_unknown_tag_is_an_invalid_request_naming_the_field(
    provider: VSphereProvider, admin: VapiAdmin, owner: Owner, clock: FakeClock,
    tags: list[str], field: str, match: str,
) -> None:
    admin.tag(admin.category("env"), "prod")
    request = machine_request("t2", provider_data={**PLACEMENT, "tags": tags})
    ctx = context(provider, request, owner)
    with pytest.raises(InvalidRequest, match=match) as caught:
        provision(provider, [ctx], clock)
    assert caught.value.field == field
    assert caught.value.permanent
    assert ctx.state.vm_moid is None  # failed before anything was cloned
    assert ctx.state.template_moid is None
    # Nothing was created on the way: no category, no tag.
    names = {admin.call("GET", f"/com/vmware/cis/tagging/category/id:{c}")["name"]
             for c in admin.call("GET", "/com/vmware/cis/tagging/category")}
    assert names == {"env"}
    assert len(admin.call("GET", "/com/vmware/cis/tagging/tag")) == 1


def test_tags_work_with_a_pinned_thumbprint_and_fail_on_a_wrong_one(
    make_provider: Callable[..., VSphereProvider], vcsim: VcsimServer, admin: VapiAdmin,
) -> None:
    prod = admin.tag(admin.category("env"), "prod")
    pinned = make_provider(ca_file=None, thumbprint=vcsim.thumbprint())
    assert pinned.tagger.resolve(["env:prod"]) == [prod]
    wrong = make_provider(ca_file=None, thumbprint="AB:" * 31 + "AB")
    with pytest.raises(AuthError, match="thumbprint"):
        wrong.tagger.resolve(["env:prod"])
    untrusted = make_provider(ca_file=None)
    with pytest.raises(AuthError, match="TLS verification"):
        untrusted.tagger.resolve(["env:prod"])


def test_tag_references_are_checked_when_the_request_is_read() -> None:
    assert VSphereMachineData.model_validate({"tags": "env:prod"}).tags == ("env:prod",)
    assert VSphereMachineData.model_validate(
        {"tags": ["a:b:c"]}).tags == ("a:b:c",)  # split at the first colon
    for bad in (["prod"], [":prod"], ["env:"]):
        with pytest.raises(ValidationError, match="category:tag"):
            VSphereMachineData.model_validate({"tags": bad})
