"""A small, dependency-free reading of a User-Agent header: browser and operating system.

Good enough for a sign-in log (Entra's ``deviceDetail``); not a device fingerprint.
"""

from __future__ import annotations

import re
from typing import Final

# (pattern, name): first match wins; order matters (Edge and Opera also say Chrome, Chrome says Safari)
_BROWSERS: Final = (
    (re.compile(r"Edg(?:e|A|iOS)?/(\d+)"), "Edge"),
    (re.compile(r"OPR/(\d+)"), "Opera"),
    (re.compile(r"Firefox/(\d+)"), "Firefox"),
    (re.compile(r"(?:Chrome|CriOS|Chromium)/(\d+)"), "Chrome"),
    (re.compile(r"Version/(\d+)[\d.]* .*Safari/"), "Safari"),
    (re.compile(r"curl/(\d+)"), "curl"),
    (re.compile(r"python-httpx/(\d+)"), "python-httpx"),
    (re.compile(r"python-requests/(\d+)"), "python-requests"),
    (re.compile(r"axios/(\d+)"), "axios"),
    (re.compile(r"PowerShell/(\d+)"), "PowerShell"),
)
_SYSTEMS: Final = (
    ("Windows NT 10.0", "Windows 10"),
    ("Windows", "Windows"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "MacOs"),
    ("Macintosh", "MacOs"),
    ("Linux", "Linux"),
)


def browser_and_os(user_agent: str | None) -> tuple[str, str]:
    """(browser with major version, operating system); '' where unknown."""
    if not user_agent:
        return "", ""
    browser = ""
    for pattern, name in _BROWSERS:
        m = pattern.search(user_agent)
        if m:
            browser = f"{name} {m.group(1)}"
            break
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), "")
    return browser, system
