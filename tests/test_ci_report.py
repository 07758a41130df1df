"""CI counts every browser test, wherever it lives, and fails when one is skipped.

`.ci/run`'s check_report reads pytest's JUnit report; it used to count only
tests under tests/browser/, so a browser test elsewhere (tests/bulk had one)
could be skipped unnoticed (issue 11, defect 10).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check_report(junit: Path) -> subprocess.CompletedProcess:
    """Run check_report's Python, as .ci/run has it, on a JUnit report."""
    script = (ROOT / ".ci" / "run").read_text()
    code = re.search(r"check_report\(\) \{\n  python3 - \"\$1\" <<'PY'\n(.*?)\nPY\n", script, re.S)
    assert code, "check_report's Python is no longer where this test looks for it"
    return subprocess.run(  # noqa: S603 - our own script, on our own file
        [sys.executable, "-", str(junit)], input=code[1], capture_output=True, text=True
    )


def test_a_skipped_browser_test_outside_tests_browser_fails_ci(tmp_path):
    """A browser test anywhere (here: a file outside tests/, tagged by the
    project's conftest hook) that was skipped: CI must count it and fail."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
    )
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import pytest\n\n\n"
        "@pytest.mark.browser\n"
        "def test_clicks_through():\n"
        "    pytest.skip('no Chromium here')\n"
    )
    junit = tmp_path / "report.xml"
    env = {**os.environ}
    env.pop("REQUIRE_BROWSER_TESTS", None)
    subprocess.run(  # noqa: S603
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
            f"--junitxml={junit}", str(probe),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert junit.exists()

    result = check_report(junit)

    assert "1 of them browser tests" in result.stdout, result.stdout
    assert "1 skipped" in result.stdout
    assert "SKIPPED browser test " in result.stdout and "test_clicks_through" in result.stdout
    assert result.returncode == 1


def test_a_report_whose_browser_tests_all_passed_is_ok(tmp_path):
    junit = tmp_path / "report.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.bulk.test_browser" name="test_a">'
        '<properties><property name="marker" value="browser"/></properties></testcase>'
        '<testcase classname="tests.runs.test_views" name="test_b"/>'
        "</testsuite></testsuites>"
    )

    result = check_report(junit)

    assert "2 tests in the report, 1 of them browser tests: 1 passed" in result.stdout
    assert result.returncode == 0
