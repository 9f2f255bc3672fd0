"""Omni join parameters as kernel args and as Talos documents."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from talprov.providers.types import JoinSpec
from talprov.talos.configschema import check_config
from talprov.talos.join import join_documents, join_kernel_args, render_user_data
from talprov.talos.machineconfig import load_documents
from talprov.talos.versions import SUPPORTED_LINES

TOKEN = "CANARY-join-token-9c2e"
API_URL = f"grpc://127.0.0.1:8080?grpc_tunnel=false&jointoken={TOKEN}"


def spec(mode: str = "auto") -> JoinSpec:
    return JoinSpec(api_url=SecretStr(API_URL), mode=mode)


def test_kernel_args() -> None:
    assert join_kernel_args(spec()) == [
        f"siderolink.api={API_URL}",
        "talos.events.sink=[fdae:41e4:649b:9303::1]:8090",
        "talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092",
    ]


def test_documents_match_what_omni_renders() -> None:
    # Omni's own test (internal/backend/runtime/omni/controllers/omni, maintenance config
    # patch) expects exactly this text for these parameters (yaml.v3 quoting included).
    assert join_documents(spec()) == (
        "apiVersion: v1alpha1\n"
        "kind: SideroLinkConfig\n"
        f"apiUrl: {API_URL}\n"
        "---\n"
        "apiVersion: v1alpha1\n"
        "kind: EventSinkConfig\n"
        "endpoint: '[fdae:41e4:649b:9303::1]:8090'\n"
        "---\n"
        "apiVersion: v1alpha1\n"
        "kind: KmsgLogConfig\n"
        "name: omni-kmsg\n"
        "url: tcp://[fdae:41e4:649b:9303::1]:8092\n"
    )


def test_documents_parse_as_talos_documents() -> None:
    documents = load_documents(join_documents(spec()), "join")
    assert [(d["apiVersion"], d["kind"]) for d in documents] == [
        ("v1alpha1", "SideroLinkConfig"),
        ("v1alpha1", "EventSinkConfig"),
        ("v1alpha1", "KmsgLogConfig"),
    ]
    assert documents[0]["apiUrl"] == API_URL
    assert documents[1]["endpoint"] == "[fdae:41e4:649b:9303::1]:8090"
    assert documents[2]["url"] == "tcp://[fdae:41e4:649b:9303::1]:8092"


CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n"


@pytest.mark.parametrize("mode", ["auto", "documents"])
def test_user_data_appends_documents(mode: str) -> None:
    text = render_user_data(CONFIG, spec(mode))
    documents = load_documents(text, "user-data")
    assert [d.get("kind") for d in documents] == [
        None,
        "SideroLinkConfig",
        "EventSinkConfig",
        "KmsgLogConfig",
    ]
    for major, minor in SUPPORTED_LINES:
        assert check_config(documents, "user-data", f"v{major}.{minor}.0") == []


def test_user_data_for_an_empty_config_is_just_the_join() -> None:
    for empty in ("", "\n", "---\n", "# comment only\n"):
        text = render_user_data(empty, spec())
        kinds = [d.get("kind") for d in load_documents(text, "user-data")]
        assert kinds == ["SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"], empty
        # A config of typed documents only: Talos takes it (Omni boots machines with it).
        assert check_config(load_documents(text, "user-data"), "user-data", "v1.13.9") == []


def test_user_data_handles_trailing_separators_and_missing_newline() -> None:
    text = render_user_data(CONFIG.rstrip("\n") + "\n---\n...\n", spec())
    assert text.startswith(CONFIG + "---\napiVersion: v1alpha1\nkind: SideroLinkConfig\n")
    text = render_user_data(CONFIG.rstrip("\n"), spec())
    assert text.startswith(CONFIG + "---\n")


def test_rendering_twice_adds_nothing() -> None:
    once = render_user_data(CONFIG, spec())
    assert render_user_data(once, spec()) == once


def test_kernel_args_mode_and_no_join_leave_the_config_alone() -> None:
    assert render_user_data(CONFIG, spec("kernel_args")) == CONFIG
    assert render_user_data(CONFIG, None) == CONFIG


def test_join_spec_never_shows_the_token() -> None:
    assert TOKEN not in repr(spec())
    assert TOKEN not in str(spec())


def test_user_data_cache_renders_a_request_once_and_again_when_it_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from talprov.providers.types import MachineRequest
    from talprov.talos import join

    rendered: list[str] = []
    real = join.user_data_for

    def counting(request: MachineRequest) -> str:
        rendered.append(request.id)
        return real(request)

    monkeypatch.setattr(join, "user_data_for", counting)
    cache = join.UserDataCache(size=2)
    config = "version: v1alpha1\nmachine:\n  type: worker\n"
    first = MachineRequest(id="a", provider="p", talos_version="v1.11.5", machine_config=config)
    assert cache(first) == real(first)
    assert "hostname: a" in cache(first)
    assert rendered == ["a"]
    # Anything the result depends on renders afresh: the config, the join (its secret URL).
    changed = first.model_copy(update={"machine_config": SecretStr(config + "# edited\n")})
    joined = first.model_copy(update={"join": spec("documents")})
    other_token = first.model_copy(update={"join": JoinSpec(
        api_url=SecretStr(API_URL.replace(TOKEN, "other")), mode="documents")})
    assert TOKEN in cache(joined)
    assert "other" in cache(other_token)
    cache(changed)
    assert rendered == ["a"] * 4
    # Only the last ``size`` are kept.
    cache(first)
    assert rendered == ["a"] * 5
