"""Debian's headless Chromium driven by Selenium (``apt-get install chromium chromium-driver``), for report tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: the flags issue 12 asks for, plus a private profile; background networking off: this machine has no network
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-component-update", "--disable-sync")


def require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.skip(f"headless Chromium is not installed ({', '.join(missing)} missing); CI installs it with "
                    f"'apt-get install -y chromium chromium-driver'")


@contextlib.contextmanager
def chromium(profile: Path, width: int = 1280, height: int = 1000) -> Iterator[object]:
    """A Selenium WebDriver on Debian's chromium with the given driver binary (no Selenium Manager download)."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
