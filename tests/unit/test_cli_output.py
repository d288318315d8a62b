"""The commands' reports read whole at 80 columns, in a narrow terminal and in a pipe; ``--json``
prints JSON only, with the same values. (The commands that read Kafka are run against it in
tests/e2e/test_cli_output.py.)"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.bench import processes, report
from services.cli import bench, output
from services.simulator.report import rows as simulation_rows
from tests.cli_checks import ROOT, assert_fits, assert_shows, homecare_piped

RECORDED_BENCH = ROOT / "docs" / "bench" / "bench-summary.json"


# ---- the layout -----------------------------------------------------------------------------

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.,:%£-/", min_size=1, max_size=12)
cell = st.lists(words, min_size=1, max_size=6).map(" ".join)


@settings(max_examples=100, deadline=None)
@given(
    columns=st.lists(st.tuples(cell, st.booleans(), st.booleans()), min_size=1, max_size=8),
    data=st.data(),
    room=st.integers(min_value=20, max_value=140),
)
def test_a_table_fits_its_width_and_shows_every_value_whole(columns, data, room):
    cols = [output.Column(header, right=right, wrap=wrap) for header, right, wrap in columns]
    rows = data.draw(st.lists(st.lists(cell, min_size=len(cols), max_size=len(cols)), max_size=6))
    text = output.table(cols, rows, title="a title that is long enough to need wrapping " * 3, room=room)

    # Every word is at most 12 characters, so everything fits, indented or not.
    assert all(len(line) <= room for line in text.splitlines()), text
    for row in rows:
        for value in row:
            assert_shows(text, value)
    for c in cols if rows else []:  # no rows: the title and "(none)"
        assert_shows(text, c.header)


def test_columns_that_fit_are_columns_and_those_that_do_not_become_blocks():
    cols = [output.Column("zone"), output.Column("packages", right=True)]
    rows = [("charnwood", 12), ("harborough-rural", 3)]
    assert output.table(cols, rows, room=80).splitlines() == [
        "zone              packages",
        "----------------  --------",
        "charnwood               12",
        "harborough-rural         3",
    ]
    assert output.table(cols, rows, room=24).splitlines() == [
        "zone: charnwood",
        "  packages: 12",
        "",
        "zone: harborough-rural",
        "  packages: 3",
    ]
    assert output.table(cols, [], title="queue", room=80) == "queue\n(none)"


def test_numbers_never_break_and_free_text_wraps_at_spaces():
    cols = [output.Column("measure", wrap=True), output.Column("value", right=True)]
    text = output.table(cols, [("sustained placements per second, as fast as possible", "16,518.9")], room=30)
    assert_fits(text, 30)
    assert text.splitlines()[2:] == [
        "sustained placements  16,518.9",
        "per second, as fast",
        "as possible",
    ]


# ---- bench: the rendering of a recorded result ------------------------------------------------


def recorded_bench() -> dict:
    return json.loads(RECORDED_BENCH.read_text())


def test_the_bench_report_shows_every_value_at_80_columns_and_when_narrow():
    result = recorded_bench()
    measures = report.measures(result)
    assert len(measures) >= 15
    for room in (80, 40):
        text = bench.render(result, room)
        assert_fits(text, room)
        for measure, value, target in measures:
            assert value != "-"  # the recorded result has every figure
            assert_shows(text, measure)
            assert_shows(text, value)
            assert_shows(text, target)
        # ...each measure's value on the same line as the end of its name, where the columns fit
        if room >= 80:
            assert any(line.split()[-1] == "16,518.9" for line in text.splitlines())


def test_the_bench_json_has_the_reports_values(tmp_path):
    result = recorded_bench()
    data = json.loads(json.dumps(bench.report_data(result, tmp_path)))
    summary = data["summary"]
    text = bench.render(result, 80)
    for key in ("latency_p50_s", "latency_p99_s", "sustained_placements_per_second", "baseline_messages_per_second"):
        assert_shows(text, report._f(summary[key]))
    for service, mb in summary["peak_rss_mb"].items():
        assert f"{service}: peak RSS MB" in text and report._f(mb) in text
    assert data["files"]["bench.json"] == str(tmp_path / "bench.json")


def test_the_bench_report_says_which_code_the_services_ran():
    result = recorded_bench() | {"code": {"folder": "/tmp/old", "commit": "aa651ed" + "0" * 33, "changed": True}}
    assert report.title(result).endswith("; code: /tmp/old at aa651ed00000 + changes")
    result["code"] = {"folder": "/srv/homecare", "commit": None, "changed": None}
    assert report.title(result).endswith("; code: /srv/homecare at no git commit")


def test_the_code_version_is_the_folders_commit_and_whether_its_files_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # were tmp_path inside a checkout
    assert processes.code_version(tmp_path) == {"folder": str(tmp_path), "commit": None, "changed": None}
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert processes.code_version(tmp_path) == {"folder": str(tmp_path), "commit": head, "changed": False}
    (tmp_path / "b.py").write_text("untracked\n")  # a file git does not track is no change of the code
    assert processes.code_version(tmp_path)["changed"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert processes.code_version(tmp_path)["changed"] is True


# ---- simulate: the command itself, its output to a pipe ----------------------------------------


def test_simulate_reads_whole_in_a_pipe_at_80_columns_and_narrow_and_its_json_has_the_same_values(tmp_path):
    args = ["simulate", "--days", "3", "--jobs", "1", "--no-charts", "--out", str(tmp_path)]
    data = json.loads(homecare_piped(*args, "--json", columns=80))  # JSON only: it parses whole
    assert data == json.loads((tmp_path / "result.json").read_text()) | {"wall_seconds": data["wall_seconds"]}
    measures = simulation_rows(data)
    for room in (80, 40):
        text = homecare_piped(*args, columns=room)
        assert_fits(text, room)
        for name in data["policies"]:
            assert_shows(text, name)
        for label, values in measures:
            assert_shows(text, label)
            for value in values:
                assert_shows(text, value)


# ---- outbox parked: the rendering of rows as the database lists them ---------------------------


def test_parked_outbox_rows_read_whole_at_80_columns_and_when_narrow():
    from services.cli.operations import render_parked
    from services.runtime import clock

    rows: list[dict[str, Any]] = [
        {
            "service": "brokerage",
            "id": "brokerage:1234",
            "parked_at": "2027-04-01T00:30:00+00:00",
            "type": "PackagePlaced",
            "aggregate": "6f1c2d9e-0000-4000-8000-000000000001",
            "payload_bytes": 1048276,
            "held": 3,
            "error": "MessageSizeTooLargeError: the message is 1048576 bytes when serialized",
        }
    ]
    for room in (80, 40):
        text = render_parked(rows, room)
        assert_fits(text, room)
        for value in (*(v for k, v in rows[0].items() if k != "parked_at"), clock.format_uk(rows[0]["parked_at"])):
            assert_shows(text, value)
