"""Reference data is data: an edited framework file applies to the next decision, without a restart."""

import datetime as dt
import os
import time
from decimal import Decimal

import pytest

from schemas.vocabulary import Band
from services.brokerage import domain
from services.runtime import reference as reference_data
from services.runtime.reference import DEFAULT_DIR, load_framework

WEIGHTS = 'quality_weights: {cqc: "0.6", local_risk: "0.3", hand_backs: "0.1"}'


def new_card(version: str, start: dt.date) -> str:
    return f"""rate_cards:
  - version: "{version}"
    effective_from: {start.isoformat()}
    rates: {{urban: "30.00", fringe: "31.00", rural: "32.00", isolated: "33.00"}}
"""


@pytest.fixture
def reference(tmp_path, monkeypatch):
    (tmp_path / "framework.yaml").write_text((DEFAULT_DIR / "framework.yaml").read_text())
    (tmp_path / "providers.yaml").write_text((DEFAULT_DIR / "providers.yaml").read_text())
    monkeypatch.setenv("HOMECARE_REFERENCE_DIR", str(tmp_path))
    monkeypatch.setattr(reference_data, "RECHECK_SECONDS", 0.0)  # these tests edit and read back at once
    return tmp_path / "framework.yaml"


def edit(path, old, new):
    text = path.read_text()
    assert old in text, "the fixture's framework file changed shape"
    path.write_text(text.replace(old, new, 1))
    later = time.time() + 1  # a new mtime even on coarse clocks
    os.utime(path, (later, later))


def test_the_brokerage_reads_quality_weights_from_the_reference_data_and_sees_edits(reference):
    from services.brokerage import app

    service, _ = app.build()
    assert service.rules.quality_weights == domain.QualityWeights(
        cqc=Decimal("0.6"), local_risk=Decimal("0.3"), hand_backs=Decimal("0.1")
    )
    edit(reference, WEIGHTS, 'quality_weights: {cqc: "0.2", local_risk: "0.5", hand_backs: "0.3"}')
    assert service.rules.quality_weights == domain.QualityWeights(
        cqc=Decimal("0.2"), local_risk=Decimal("0.5"), hand_backs=Decimal("0.3")
    )


def test_a_new_rate_card_added_to_the_file_takes_effect_on_its_start_date_without_a_restart(reference):
    today = dt.date.today()
    before = load_framework().rate_card_on(today)
    edit(reference, "rate_cards:\n", new_card("next-year", today + dt.timedelta(days=1)))
    assert load_framework().rate_card_on(today) == before  # not yet
    assert load_framework().rate_card_on(today + dt.timedelta(days=1)).version == "next-year"
    edit(reference, "rate_cards:\n", new_card("from-today", today))
    now_in_force = load_framework().rate_card_on(today)
    assert now_in_force.version == "from-today" and now_in_force.rates[Band.urban] == Decimal("30.00")


def test_a_broken_edit_keeps_the_last_good_version_in_force(reference):
    good = load_framework()
    edit(reference, "zones:", "zones: [oops")
    assert load_framework() is good


def test_the_file_is_looked_at_again_at_most_every_recheck_interval(reference, monkeypatch):
    monkeypatch.setattr(reference_data, "RECHECK_SECONDS", 0.5)
    looked: list[str] = []
    real_stat = type(reference).stat

    def stat(self, *args, **kwargs):
        looked.append(self.name)
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(type(reference), "stat", stat)
    before = load_framework()
    for _ in range(50):
        load_framework()
    assert looked.count("framework.yaml") == 1
    edit(reference, WEIGHTS, 'quality_weights: {cqc: "0.2", local_risk: "0.5", hand_backs: "0.3"}')
    assert load_framework() is before  # within the interval: not looked at yet
    time.sleep(0.6)
    assert load_framework().quality_weights["cqc"] == Decimal("0.2")
    assert looked.count("framework.yaml") == 2


def test_every_reference_file_is_one_piece_a_broken_edit_keeps_the_last_good_and_missing_files_fall_back_as_declared(
    tmp_path, monkeypatch
):
    """services/runtime/reference.py ReferenceFile: the same rules for every file (the five loaders were
    five copies of them)."""
    monkeypatch.setattr(reference_data, "RECHECK_SECONDS", 0)
    demo = reference_data.ReferenceFile("demo.yaml", dict, what="demo")
    (tmp_path / "demo.yaml").write_text("version: a\n")
    good = demo.load(tmp_path)
    assert good == {"version": "a"}
    (tmp_path / "demo.yaml").write_text("version: [oops\n")
    os.utime(tmp_path / "demo.yaml", ns=(1, 1))  # another mtime, so it is parsed again
    assert demo.load(tmp_path) is good  # the last good version stays in force
    with pytest.raises(FileNotFoundError):
        demo.load(tmp_path / "elsewhere")  # shipped="never": no fallback
    # "always": a folder without the file uses the shipped one; "default-folder": only the installation's.
    assert reference_data.load_finance(tmp_path).version
    with pytest.raises(FileNotFoundError):
        reference_data.load_delegation(tmp_path)
    monkeypatch.setenv("HOMECARE_REFERENCE_DIR", str(tmp_path))
    assert reference_data.load_delegation().version
