"""All sixteen systems through ``polymodal demo --setting smoke``, and the report opened in headless Chromium: every
system has a section with a results table and at least one plot that the browser rendered (issue 12)."""

import os
import re
from pathlib import Path

import pytest
from demo_chromium import chromium, require_chromium

from polymodal.demo import run_demo
from polymodal.demo.plan import demo_recipes


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory):
    return run_demo(out=tmp_path_factory.mktemp("demo") / "smoke", setting="smoke", jobs=2)


@pytest.mark.slow
def test_every_system_finishes_in_the_smoke_setting(smoke_demo):
    names = [r.name for r in demo_recipes()]
    assert smoke_demo.failed == [], (smoke_demo.dir / "report.md").read_text()
    assert smoke_demo.finished == names and len(names) == 16


@pytest.mark.slow
def test_report_renders_every_system_in_headless_chromium(smoke_demo, tmp_path):
    require_chromium()
    names = [r.name for r in demo_recipes()]
    page = smoke_demo.dir / "report.html"
    html_text = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html_text)  # self-contained: nothing to fetch
    shots = Path(os.environ.get("POLYMODAL_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path / "profile") as driver:
        driver.get(page.as_uri())
        overview = driver.find_elements("css selector", "table.overview tbody tr")
        assert [r.find_element("css selector", "a").text for r in overview] == names
        sections = driver.find_elements("css selector", "section.system")
        assert [s.get_attribute("id") for s in sections] == [f"sys-{n}" for n in names]
        for name, sec in zip(names, sections, strict=True):
            assert sec.get_attribute("data-status") == "finished", name
            rows = sec.find_elements("css selector", "table.results tbody tr")
            assert len(rows) >= 2, f"{name}: the results table has {len(rows)} rows"
            sizes = driver.execute_script(
                "return Array.from(arguments[0].querySelectorAll('img.plot'))"
                ".map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])", sec)
            assert any(done and natural > 0 and shown > 0 for done, natural, shown in sizes), f"{name}: {sizes}"
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(int(height), 12000))
        shot = shots / "demo-report.png"
        assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
