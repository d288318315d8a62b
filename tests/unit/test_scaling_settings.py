"""The partition and bucket counts are settings with limits (issue 22, decision 0115)."""

import pydantic
import pytest

from services.runtime import outbox, settings
from services.runtime.settings import SharedSettings


def test_the_counts_default_to_six_partitions_and_sixteen_buckets(monkeypatch):
    monkeypatch.delenv("KAFKA_PARTITIONS", raising=False)
    monkeypatch.delenv("OUTBOX_BUCKETS", raising=False)
    settings = SharedSettings()
    assert (settings.kafka_partitions, settings.outbox_buckets) == (6, 16)


def test_the_counts_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_PARTITIONS", "12")
    monkeypatch.setenv("OUTBOX_BUCKETS", "64")
    settings = SharedSettings()
    assert (settings.kafka_partitions, settings.outbox_buckets) == (12, 64)


@pytest.mark.parametrize(
    ("name", "value"), [("KAFKA_PARTITIONS", "0"), ("OUTBOX_BUCKETS", "0"), ("OUTBOX_BUCKETS", "2000")]
)
def test_a_count_outside_its_limits_is_refused_naming_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError, match=name.lower()):
        SharedSettings()


def test_rows_are_spread_over_the_configured_buckets():
    try:
        outbox.configure_buckets(4)
        assert {outbox.bucket_of(f"package-{i}") for i in range(200)} == {0, 1, 2, 3}
        with pytest.raises(ValueError, match="1 to 1024"):
            outbox.configure_buckets(0)
    finally:
        outbox.configure_buckets(outbox.DEFAULT_BUCKETS)


def test_the_reporting_service_fetches_fuller_batches_than_the_others(monkeypatch):
    # Decision 0136: the projection waits for fuller fetches; the services a package waits on do not.
    for name in ("REPORTING_CONSUMER_FETCH_MIN_BYTES", "BROKERAGE_CONSUMER_FETCH_MIN_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOMECARE_ENVIRONMENT", "development")
    reporting, brokerage = settings.load("reporting"), settings.load("brokerage")
    assert reporting.consumer_fetch_min_bytes > brokerage.consumer_fetch_min_bytes == 1
    assert reporting.consumer_batch_size > brokerage.consumer_batch_size


def test_a_service_variable_wins_over_the_service_default(monkeypatch):
    monkeypatch.setenv("HOMECARE_ENVIRONMENT", "development")
    monkeypatch.setenv("REPORTING_CONSUMER_FETCH_MIN_BYTES", "1")
    assert settings.load("reporting").consumer_fetch_min_bytes == 1


def test_an_unprefixed_variable_that_sets_nothing_leaves_the_service_default(monkeypatch):
    # Consumer settings are per service: CONSUMER_FETCH_MIN_BYTES alone is read by no one, so it must
    # not take reporting's default away either.
    monkeypatch.setenv("HOMECARE_ENVIRONMENT", "development")
    monkeypatch.delenv("REPORTING_CONSUMER_FETCH_MIN_BYTES", raising=False)
    monkeypatch.setenv("CONSUMER_FETCH_MIN_BYTES", "1")
    assert (
        settings.load("reporting").consumer_fetch_min_bytes
        == settings.SERVICE_DEFAULTS["reporting"]["consumer_fetch_min_bytes"]
    )
