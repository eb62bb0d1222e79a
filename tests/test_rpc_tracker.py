"""TVM RPC through a tracker (`rpc-tracker://HOST:PORT/KEY[/TARGET]`): a real tracker and a
real server registered with it under a device key, started as subprocesses."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import free_port, port_open, run_cli, start_service, stop_service

from mutatenn.build import known_target_names, parse_target
from mutatenn.cli import main
from mutatenn.compare import compare
from mutatenn.errors import TargetError
from mutatenn.runners.tvm_relax import tracker_server_keys

KEY = "mutatenn-test"


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """A tracker with one server of key `KEY`; yields both ports. The server starts only
    once the tracker listens: it retries a refused tracker every 5 s."""
    port, server_port = free_port(), free_port()
    logs = tmp_path_factory.mktemp("tracker-logs")
    procs = [start_service(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end",
                            str(port + 1)], lambda: port_open(port), "the RPC tracker", logs)]
    try:
        procs.append(start_service(["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", KEY,
                                    "--host", "127.0.0.1", "--port", str(server_port), "--port-end",
                                    str(server_port + 1)],
                                   lambda: KEY in tracker_server_keys("127.0.0.1", port),
                                   "the RPC server registering with the tracker", logs))
        yield SimpleNamespace(port=port, server_port=server_port)
    finally:
        for proc in reversed(procs):
            stop_service(proc)


def test_tracker_targets_parse_and_stay_apart_from_direct_ones():
    target = parse_target("rpc-tracker://10.1.2.3:9190/rasp4/cpu-avx2")
    assert (target.device, target.rpc_host, target.rpc_port, target.rpc_key) == ("rpc", "10.1.2.3", 9190, "rasp4")
    assert target.spec["mcpu"] == "haswell" and target.rpc_address == "rpc-tracker://10.1.2.3:9190/rasp4"
    direct = parse_target("rpc://10.1.2.3:9190/cpu-avx2")
    assert direct.rpc_key == "" and direct.name != target.name and direct.key() == target.key()  # same code
    assert parse_target("rpc-tracker://h:9190/rasp4").spec["mcpu"] == "x86-64"
    assert "rpc-tracker://HOST:PORT/KEY[/TARGET]" in known_target_names()
    for bad, phrase in [("rpc-tracker://h:9190", "expected rpc-tracker://HOST:PORT/KEY"),
                        ("rpc-tracker://h/k", "expected rpc-tracker://HOST:PORT/KEY"),
                        ("rpc-tracker://h:99999/k", "port must be 1..65535"),
                        ("rpc-tracker://h:9190/k/cpu", "remote target must be one of")]:
        with pytest.raises(TargetError, match=phrase) as caught:
            parse_target(bad)
        assert "\n" not in str(caught.value)


def test_compare_through_the_tracker_equals_the_local_build(tmp_path, tracker):
    remote = f"tvm:rpc-tracker://127.0.0.1:{tracker.port}/{KEY}"
    result = compare("digits", "digits:12", remote, "tvm:cpu-generic", tmp_path / "cmp", render=False)
    assert result.errors == {}
    row = result.table.set_index("variant").loc[remote]
    assert row["top1_agreement"] == 1.0 and row["rel_l2"] < 1e-5
    assert row["latency_ms_median"] > 0


def test_unknown_key_is_refused_before_any_build(tmp_path, tracker):
    proc = run_cli("compare", "--model", "digits", "--images", "digits:2", "--variants",
                   f"tvm:rpc-tracker://127.0.0.1:{tracker.port}/no-such-key", "--baseline", "tvm:cpu-generic",
                   "--out", str(tmp_path / "cmp"), "--no-report", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, proc.stderr
    assert "'no-such-key'" in lines[0] and f"127.0.0.1:{tracker.port}" in lines[0] and KEY in lines[0]
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("address, phrase", [
    ("rpc-tracker://127.0.0.1:9190", "bad RPC tracker address 'rpc-tracker://127.0.0.1:9190': expected"),
    ("rpc-tracker://127.0.0.1:0/k", "port must be 1..65535"),
    ("rpc-tracker://127.0.0.1:{dead}/k", "RPC tracker rpc-tracker://127.0.0.1:{dead} is not reachable"),
])
def test_a_malformed_or_dead_tracker_address_gives_one_clear_line(tmp_path, capsys, address, phrase):
    dead = free_port()
    code = main(["compare", "--model", "digits", "--images", "digits:2", "--variants",
                 "tvm:" + address.format(dead=dead), "--baseline", "tvm:cpu-generic", "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mutatenn: error:") and "\n" not in err, err
    assert phrase.format(dead=dead) in err, err


def test_a_port_that_is_no_tracker_is_refused(tracker):
    # The RPC server itself speaks another protocol: it resets the tracker handshake.
    with pytest.raises(TargetError, match="does not answer as a TVM RPC tracker"):
        tracker_server_keys("127.0.0.1", tracker.server_port)
    assert KEY in tracker_server_keys("127.0.0.1", tracker.port)  # and the server still serves
