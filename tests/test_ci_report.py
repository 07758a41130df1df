"""CI counts every browser test, wherever it lives, and fails when one is skipped.

`.ci/run`'s check_report reads pytest's JUnit report; it used to count only
tests under tests/browser/, so tests/bulk/test_browser.py could be skipped
unnoticed (issue 11, defect 10).
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
    """The browser tests of tests/bulk/ run in a pytest without a Chromium:
    skipped, so CI must count them and fail."""
    junit = tmp_path / "report.xml"
    env = {**os.environ, "CHROMIUM_PATH": str(tmp_path / "no-chromium")}
    env.pop("REQUIRE_BROWSER_TESTS", None)
    subprocess.run(  # noqa: S603
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--junitxml={junit}", "tests/bulk/test_browser.py",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert junit.exists()

    result = check_report(junit)

    browser_tests = sum(
        1 for line in (ROOT / "tests/bulk/test_browser.py").read_text().splitlines()
        if line.startswith("def test_")
    )  # fmt: skip
    assert browser_tests >= 1
    assert f"{browser_tests} of them browser tests" in result.stdout, result.stdout
    assert f"{browser_tests} skipped" in result.stdout
    assert "SKIPPED browser test tests.bulk.test_browser::" in result.stdout
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
