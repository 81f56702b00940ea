"""The shop's frontend: one HTML page listing the backend's products.

The backend's address and the page title come from the `shop-config` ConfigMap. When the
backend does not answer, the page says so with a 503 instead of failing.
"""

import html
import json
import os
import urllib.request
from typing import Any

from flask import Flask
from flask.typing import ResponseReturnValue

app = Flask(__name__)


def fetch_products() -> dict[str, Any]:
    url = os.environ.get("BACKEND_URL", "http://shop-backend") + "/api/products"
    with urllib.request.urlopen(url, timeout=2) as response:
        data: dict[str, Any] = json.load(response)
    return data


@app.get("/")
def index() -> ResponseReturnValue:
    title = html.escape(os.environ.get("SHOP_TITLE", "Shop"))
    try:
        catalog = fetch_products()
    except (OSError, ValueError):
        return f"<!doctype html><title>{title}</title><p>The catalog is unavailable.</p>\n", 503
    currency = html.escape(str(catalog["currency"]))
    rows = "".join(f"<li>{html.escape(str(p['name']))}: {p['price'] / 100:.2f} {currency}</li>"
                   for p in catalog["products"])
    return f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>{rows}</ul>\n"


@app.get("/healthz")
def healthz() -> str:
    return "ok\n"
