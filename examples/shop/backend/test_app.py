"""Tests of the shop's backend (run inside the image build's test stage)."""

import pytest
from app import app


def test_products_in_the_configured_currency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_CURRENCY", "CHF")
    data = app.test_client().get("/api/products").get_json()
    assert data["currency"] == "CHF"
    assert [p["id"] for p in data["products"]] == ["mug", "tee", "cap"]


def test_checkout_says_whether_the_key_is_set_and_never_shows_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYMENT_API_KEY", raising=False)
    assert app.test_client().get("/api/checkout").get_json() == {"ready": False}
    monkeypatch.setenv("PAYMENT_API_KEY", "sk-test-1234")
    response = app.test_client().get("/api/checkout")
    assert response.get_json() == {"ready": True}
    assert b"sk-test" not in response.data


def test_health() -> None:
    assert app.test_client().get("/healthz").data == b"ok\n"
