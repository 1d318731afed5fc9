"""One mapping of transport names (``nbmcp.transport.TRANSPORTS``) drives ``nbmcp serve --transport``, the
options type, the options check, the kernel-per-client choice and ``nbmcp serve``'s runners."""

from __future__ import annotations

import typing

import pytest

from nbmcp.cli import main
from nbmcp.serve.provider import ServeOptions
from nbmcp.serve.run import RUNNERS
from nbmcp.transport import TRANSPORTS, Transport


def test_the_options_type_is_the_mapping() -> None:
    hinted = typing.get_type_hints(ServeOptions)["transport"]
    assert typing.get_origin(hinted) is typing.Literal
    assert typing.get_args(hinted) == tuple(TRANSPORTS)


def test_serve_has_a_runner_for_every_transport() -> None:
    assert set(RUNNERS) == set(TRANSPORTS)


def test_the_cli_offers_what_the_mapping_holds(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--transport", "smoke-signals"])
    refused = capsys.readouterr().err
    assert "invalid choice: 'smoke-signals'" in refused
    assert all(repr(name) in refused for name in TRANSPORTS)
    # one more entry in the mapping is one more choice, with its help, and nothing else to edit
    monkeypatch.setitem(
        TRANSPORTS, "carrier-pigeon", Transport("one bird per message", one_client=True, stderr_seen=True)
    )
    with pytest.raises(SystemExit):
        main(["serve", "--transport", "smoke-signals"])
    assert "'carrier-pigeon'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "carrier-pigeon: one bird per message" in " ".join(capsys.readouterr().out.split())


def test_the_options_accept_the_mapping_s_names_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TRANSPORTS:
        assert ServeOptions(transport=name).transport == name
    with pytest.raises(ValueError, match="transport must be one of stdio, http, not 'carrier-pigeon'"):
        ServeOptions(transport="carrier-pigeon")
    monkeypatch.setitem(
        TRANSPORTS, "carrier-pigeon", Transport("one bird per message", one_client=True, stderr_seen=True)
    )
    assert ServeOptions(transport="carrier-pigeon").transport == "carrier-pigeon"


def test_an_unknown_transport_is_a_clear_start_up_failure(capsys: pytest.CaptureFixture) -> None:
    from nbmcp.serve.run import main as serve_main
    from nbmcp.serve.unavailable import StartupFailed

    with pytest.raises(StartupFailed, match="--transport must be one of stdio, http, not 'carrier-pigeon'"):
        serve_main({"transport": "carrier-pigeon"})
