"""Tests of the shop's frontend (run inside the image build's test stage)."""

from typing import Any

import app as frontend
import pytest


def test_lists_the_backends_products(monkeypatch: pytest.MonkeyPatch) -> None:
    def catalog() -> dict[str, Any]:
        return {"currency": "EUR", "products": [{"name": "Mug <b>", "price": 1200}]}

    monkeypatch.setattr(frontend, "fetch_products", catalog)
    monkeypatch.setenv("SHOP_TITLE", "Acme shop")
    page = frontend.app.test_client().get("/")
    assert page.status_code == 200
    assert b"<h1>Acme shop</h1>" in page.data
    assert b"<li>Mug &lt;b&gt;: 12.00 EUR</li>" in page.data


def test_backend_down_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_URL", "http://127.0.0.1:9")  # nothing listens there
    page = frontend.app.test_client().get("/")
    assert page.status_code == 503
    assert b"unavailable" in page.data


def test_health() -> None:
    assert frontend.app.test_client().get("/healthz").data == b"ok\n"
