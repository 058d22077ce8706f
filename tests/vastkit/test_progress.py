"""The launch's progress lines: whole lines only, state changes said once, a still-waiting line on a clock."""

from __future__ import annotations

from vastkit.progress import ProgressFile, WaitReporter, describe_state, read_new_lines
from vastkit.records import Instance


def test_the_reader_returns_whole_lines_and_waits_for_the_rest(tmp_path):
    path = tmp_path / "progress"
    write = ProgressFile(str(path))
    write("first\nevent")  # one event is one line, whatever it held
    with open(path, "ab") as fh:
        fh.write(b"half a li")
    lines, offset = read_new_lines(str(path), 0)
    assert lines == ["first event"]
    with open(path, "ab") as fh:
        fh.write(b"ne\n")
    more, offset = read_new_lines(str(path), offset)
    assert more == ["half a line"]
    assert read_new_lines(str(path), offset) == ([], offset)
    write.close()


def test_the_reader_of_a_file_not_yet_written_reads_nothing(tmp_path):
    assert read_new_lines(str(tmp_path / "none"), 0) == ([], 0)


def test_a_write_that_fails_is_dropped(tmp_path):
    write = ProgressFile(str(tmp_path / "progress"))
    write.close()
    write("after close")  # EBADF, as a full disk would be ENOSPC: progress never breaks a cleanup


def test_the_reporter_says_changes_at_once_and_repeats_only_on_its_clock():
    now = [100.0]
    said: list[str] = []
    report = WaitReporter(said.append, 7, clock=lambda: now[0], every=30)
    report("loading")
    now[0] += 10
    report("loading")
    now[0] += 5
    report("running")
    now[0] += 29
    report("running")
    now[0] += 2
    report("running")
    assert said == ["instance 7: loading (0s)", "instance 7: running (15s)", "instance 7: still running (46s)"]


def _instance(**fields) -> Instance:
    base = dict(id=1, label="r", machine_id=2, actual_status=None, intended_status="running", cur_state=None,
                status_msg=None, ssh_host=None, ssh_port=None, public_ipaddr=None, direct_ssh_port=None,
                gpu_name=None, num_gpus=None, dph_total=None, disk_space=None, image=None, start_date=None,
                is_bid=False)
    return Instance(**{**base, **fields})


def test_the_state_names_status_message_and_ssh():
    assert describe_state(None) == "not listed yet"
    assert describe_state(_instance()) == "provisioning"
    assert describe_state(_instance(actual_status="loading", status_msg="pulling")) == "loading (pulling)"
    assert describe_state(_instance(actual_status="running"), ConnectionRefusedError()) == (
        "running; SSH not ready yet (ConnectionRefusedError)")
