"""The local realm's provider_id attribute (decision 0165): only the council's administrators may
set it (a user who could would answer for another organisation), and the clients staff sign in
through put it in their tokens."""

from __future__ import annotations

import json
from pathlib import Path

REALM = json.loads((Path(__file__).parents[2] / "deploy/keycloak/realm-homecare.json").read_text())


def test_only_administrators_edit_a_users_provider():
    [component] = REALM["components"]["org.keycloak.userprofile.UserProfileProvider"]
    profile = json.loads(component["config"]["kc.user.profile.config"][0])
    [attribute] = [a for a in profile["attributes"] if a["name"] == "provider_id"]
    assert attribute["permissions"]["edit"] == ["admin"]
    assert profile.get("unmanagedAttributePolicy") in (None, "DISABLED")  # no attribute a user sets themselves


def test_the_staff_clients_map_the_attribute_to_the_provider_id_claim():
    for client in [c for c in REALM["clients"] if c["clientId"] in ("console", "homecare-cli")]:
        [mapper] = [m for m in client["protocolMappers"] if m["protocolMapper"] == "oidc-usermodel-attribute-mapper"]
        assert mapper["config"]["user.attribute"] == mapper["config"]["claim.name"] == "provider_id"
        assert mapper["config"]["id.token.claim"] == mapper["config"]["access.token.claim"] == "true"
