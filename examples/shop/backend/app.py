"""The shop's backend: a JSON API over the catalog.

Settings come from the environment: the currency from the `shop-config` ConfigMap, the payment
provider's key from the `shop-payment` Secret (created in the cluster, never in Git). The key is
never logged or returned: the API only says whether checkout is configured.
"""

import os

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)

CATALOG = (
    {"id": "mug", "name": "Mug", "price": 1200},
    {"id": "tee", "name": "T-shirt", "price": 2500},
    {"id": "cap", "name": "Cap", "price": 1800},
)


@app.get("/api/products")
def products() -> ResponseReturnValue:
    return jsonify({"currency": os.environ.get("SHOP_CURRENCY", "EUR"),
                    "products": list(CATALOG)})


@app.get("/api/checkout")
def checkout() -> ResponseReturnValue:
    return jsonify({"ready": bool(os.environ.get("PAYMENT_API_KEY"))})


@app.get("/healthz")
def healthz() -> str:
    return "ok\n"
