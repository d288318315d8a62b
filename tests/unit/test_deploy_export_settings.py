"""deploy/lib.sh's export_settings: the one reader of the deploy scripts' KEY=value files."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_values_keep_every_equals_sign_and_the_environment_wins(tmp_path):
    """A Fernet key ends in '=': `IFS='=' read` dropped it and the services refused the key."""
    settings = tmp_path / "secrets.env"
    settings.write_text("SECRETS_KEYS=abc-_def==\nURL=http://x/?a=b\n# a comment\n\nGIVEN=from-the-file\n")
    script = f'source deploy/lib.sh; export_settings "{settings}"; printf "%s|%s|%s" "$SECRETS_KEYS" "$URL" "$GIVEN"'
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GIVEN": "from-the-environment", "HOMECARE_RUN_DIR": str(tmp_path / "run")},
        check=True,
    )
    assert run.stdout == "abc-_def==|http://x/?a=b|from-the-environment"
