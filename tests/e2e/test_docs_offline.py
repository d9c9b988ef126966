"""Issue 10 §3: /docs works offline — Swagger UI from packaged assets, no external host."""

from __future__ import annotations

import re

from tests.e2e.conftest import Server


def test_docs_reference_no_external_host_and_assets_are_served(server: Server) -> None:
    r = server.client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", r.text)
    assert urls, r.text
    external = [u for u in urls if re.match(r"^(?:[a-z]+:)?//", u)]
    assert external == [], external
    assert "cdn.jsdelivr" not in r.text and "unpkg" not in r.text
    for url in urls:
        asset = server.client.get(url)
        assert asset.status_code == 200, (url, asset.status_code)
    js = server.client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    css = server.client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert server.client.get("/docs/oauth2-redirect").status_code == 200
    assert server.client.get("/redoc").status_code == 404  # ReDoc needs a CDN: not offered
