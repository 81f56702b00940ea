"""Tests of the hello app (run inside the image build's test stage)."""

from app import app


def test_hello() -> None:
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert response.data == b"Hello World!\n"


def test_health() -> None:
    assert app.test_client().get("/healthz").data == b"ok\n"
