"""The provider integration guide's signing specification, as a provider's developer uses it
(docs/guide/provider-integration.md):

- the test vectors on the page are the file's, and the platform's signer makes exactly them;
- the page's Python verifier and the linked JavaScript one (run by plain ``node``) accept the
  vectors and real deliveries signed by ``services/runtime/signing.py``, and refuse tampered,
  replayed-under-a-new-id, stale and incomplete ones;
- the retry schedule, timeout, attempts and tolerance the page states are the code's.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.runtime import signing
from services.runtime.retry import retry_delay
from services.runtime.settings import load
from tests.docs.test_docs_examples import blocks_of

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs/guide/provider-integration.md"
VECTORS_FILE = ROOT / "docs/guide/examples/webhook-signature-vectors.json"
VERIFIER_JS = ROOT / "docs/guide/examples/verify-webhook.mjs"


def page_block(language: str, containing: str) -> str:
    [block] = [b.body for b in blocks_of(GUIDE) if b.language == language and containing in b.body]
    return block


def vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS_FILE.read_text())["vectors"]


def test_the_page_shows_the_vectors_file_and_the_platform_signs_them_so():
    assert json.loads(page_block("json", '"vectors"')) == json.loads(VECTORS_FILE.read_text())
    assert len(vectors()) >= 2
    for v in vectors():
        body = v["body"].encode("utf-8")
        assert signing.signature(v["secret"], v["delivery_id"], v["timestamp"], body) == v["signature"], v["name"]
        made = signing.signed_headers(v["secret"], v["delivery_id"], body, now=v["timestamp"])
        assert made[signing.SIGNATURE_HEADER] == v["signature"]
        assert made[signing.TIMESTAMP_HEADER] == str(v["timestamp"]), "whole unix seconds"


def rotation_vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS_FILE.read_text())["rotation_overlap"]


def test_the_platform_signs_the_rotation_overlap_vector_with_both_secrets_new_first():
    assert rotation_vectors()
    for v in rotation_vectors():
        body = v["body"].encode("utf-8")
        made = signing.signed_headers(
            [v["secrets"]["new"], v["secrets"]["previous"]], v["delivery_id"], body, now=v["timestamp"]
        )
        assert made[signing.SIGNATURE_HEADER] == v["signature"], v["name"]
        for secret in v["secrets"].values():
            headers = {**made, "Homecare-Signature": v["signature"]}
            assert signing.verify(secret, headers, body, now=v["timestamp"]) == v["delivery_id"]


def cases() -> list[dict[str, Any]]:
    """Deliveries and the verdict a receiver must reach: the delivery id, or refused."""
    out: list[dict[str, Any]] = []
    for v in vectors():
        headers = {
            "Homecare-Delivery-Id": v["delivery_id"],
            "Homecare-Timestamp": str(v["timestamp"]),
            "Homecare-Signature": v["signature"],
        }
        body = v["body"].encode()
        out.append(dict(name=v["name"], secret=v["secret"], headers=headers, body=body, now=v["timestamp"]))
    for v in rotation_vectors():
        headers = {
            "Homecare-Delivery-Id": v["delivery_id"],
            "Homecare-Timestamp": str(v["timestamp"]),
            "Homecare-Signature": v["signature"],
        }
        for which in ("new", "previous"):
            out.append(
                dict(
                    name=f"{v['name']}: the {which} secret",
                    secret=v["secrets"][which],
                    headers=headers,
                    body=v["body"].encode(),
                    now=v["timestamp"],
                    expect=v["delivery_id"],
                )
            )
        out.append(
            dict(
                name=f"{v['name']}: a third secret",
                secret="whsec_" + secrets.token_urlsafe(32),
                headers=headers,
                body=v["body"].encode(),
                now=v["timestamp"],
                expect=None,
            )
        )
    # Real deliveries, signed now by the platform's signer with a secret made as the service makes them.
    secret = "whsec_" + secrets.token_urlsafe(32)
    delivery_id = str(uuid.uuid4())
    body = json.dumps({"kind": "offer", "package_id": str(uuid.uuid4()), "note": "£ é"}, ensure_ascii=False).encode()
    now = int(time.time())
    real = signing.signed_headers(secret, delivery_id, body, now=now)
    out.append(dict(name="real", secret=secret, headers=real, body=body, now=now, expect=delivery_id))
    out.append(
        dict(
            name="lower-case header names",
            secret=secret,
            headers={k.lower(): v for k, v in real.items()},
            body=body,
            now=now,
            expect=delivery_id,
        )
    )
    later = signing.signed_headers(secret, delivery_id, body, now=now + 3600)
    out.append(dict(name="a retry, re-signed later", secret=secret, headers=later, body=body, now=now + 3600))
    out[-1]["expect"] = delivery_id
    refused = [
        ("tampered body", real, body.replace(b"offer", b"offeR"), now),
        ("replayed under a new delivery id", {**real, "Homecare-Delivery-Id": str(uuid.uuid4())}, body, now),
        ("another timestamp", {**real, "Homecare-Timestamp": str(now + 1)}, body, now),
        ("stale: 301 s old", real, body, now + 301),
        ("from the future: 301 s ahead", real, body, now - 301),
        ("no signature", {k: v for k, v in real.items() if k != "Homecare-Signature"}, body, now),
        ("no delivery id", {k: v for k, v in real.items() if k != "Homecare-Delivery-Id"}, body, now),
        ("malformed timestamp", {**real, "Homecare-Timestamp": "soon"}, body, now),
        ("the v1 scheme", {**real, "Homecare-Signature": real["Homecare-Signature"].replace("v2=", "v1=")}, body, now),
    ]
    out += [dict(name=n, secret=secret, headers=h, body=b, now=t, expect=None) for n, h, b, t in refused]
    for name, wrong in (
        ("another provider's secret", "whsec_" + secrets.token_urlsafe(32)),
        ("the secret without its whsec_ prefix", secret.removeprefix("whsec_")),
    ):
        out.append(dict(name=name, secret=wrong, headers=real, body=body, now=now, expect=None))
    for case in out[: len(vectors())]:
        case["expect"] = case["headers"]["Homecare-Delivery-Id"]
    return out


def test_the_pages_python_verifier_accepts_genuine_deliveries_and_refuses_the_rest(monkeypatch):
    monkeypatch.chdir(ROOT)  # the block reads the vectors file by its path from the repository's root
    namespace: dict[str, Any] = {"__name__": "guide_snippet"}
    exec(compile(page_block("python", "def verify_delivery"), str(GUIDE), "exec"), namespace)
    verify = namespace["verify_delivery"]
    for case in cases():
        if case["expect"] is None:
            with pytest.raises(ValueError):
                verify(case["secret"], case["headers"], case["body"], now=case["now"])
        else:
            assert verify(case["secret"], case["headers"], case["body"], now=case["now"]) == case["expect"], case


NODE_HARNESS = """
import { verifyDelivery } from %s;
let input = "";
for await (const chunk of process.stdin) input += chunk;
const verdicts = JSON.parse(input).map((c) => {
  try {
    return verifyDelivery(c.secret, c.headers, Buffer.from(c.body, "base64"), { now: c.now });
  } catch (e) {
    if (e.name !== "Error" || !e.message) throw e;
    return null;
  }
});
console.log(JSON.stringify(verdicts));
"""


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed: the guide's JavaScript verifier cannot be checked")
    return found


def test_the_javascript_verifier_accepts_genuine_deliveries_and_refuses_the_rest(node):
    import base64

    all_cases = cases()
    payload = [
        {"secret": c["secret"], "headers": c["headers"], "body": base64.b64encode(c["body"]).decode(), "now": c["now"]}
        for c in all_cases
    ]
    harness = NODE_HARNESS % json.dumps(VERIFIER_JS.as_uri())
    done = subprocess.run(
        [node, "--input-type=module", "-e", harness],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    verdicts = json.loads(done.stdout)
    assert [(c["name"], v) for c, v in zip(all_cases, verdicts, strict=True)] == [
        (c["name"], c["expect"]) for c in all_cases
    ]


def test_the_javascript_verifier_checks_the_vectors_file_as_a_program(node, tmp_path):
    done = subprocess.run([node, str(VERIFIER_JS), str(VECTORS_FILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok: ") == len(vectors()) + len(rotation_vectors())
    # A vector with a wrong signature fails the program (it does check).
    broken = json.loads(VECTORS_FILE.read_text())
    broken["vectors"][0]["signature"] = "v2=" + "0" * 64
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    failed = subprocess.run([node, str(VERIFIER_JS), str(tmp_path / "broken.json")], capture_output=True, text=True)
    assert failed.returncode != 0 and "the vector says" in failed.stderr


def test_the_retry_schedule_and_timeouts_on_the_page_are_the_codes():
    settings = load("providers")
    text = GUIDE.read_text()
    rows = re.findall(r"^\| (\d+)(?: and later)? \| ([\d.]+)-([\d.]+) s \|$", text, re.M)
    assert len(rows) >= 9, "the retry table is on the page"
    initial, maximum = settings.webhook_backoff_initial_seconds, settings.webhook_backoff_max_seconds
    for attempt, low, high in rows:
        n = int(attempt)
        assert float(low) == retry_delay(n, initial=initial, maximum=maximum, jitter=0), attempt
        assert float(high) == retry_delay(n, initial=initial, maximum=maximum, jitter=1), attempt
    last = int(rows[-1][0])
    assert retry_delay(last, initial=initial, maximum=maximum, jitter=1) == maximum, "the last row is the cap"
    assert retry_delay(last - 1, initial=initial, maximum=maximum, jitter=1) < maximum, "the cap starts at the last row"
    assert f"request timeout of {settings.webhook_timeout_seconds:g} seconds" in text
    assert f"after **{settings.webhook_max_attempts} attempts**" in text
    assert f"`min({maximum:g}, {initial:g} × 2^(n-1))`" in text
    assert f"more than **{signing.DEFAULT_TOLERANCE_SECONDS} seconds**" in text
    assert f"claimed for {settings.webhook_timeout_seconds * 3:g} seconds" in text


def test_the_pages_closing_notice_example_fits_the_contract():
    from schemas.adapters import OfferClosedNotice

    example = json.loads(page_block("json", '"offer_closed"'))
    assert OfferClosedNotice.model_validate(example).model_dump(mode="json") == example
