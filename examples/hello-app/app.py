"""The tutorial's hello app: one page that says hello."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello World!\n"


@app.get("/healthz")
def healthz() -> str:
    return "ok\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=8080)
