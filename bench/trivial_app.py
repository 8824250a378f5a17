"""The reference of `bench.ingest`: a trivial FastAPI POST endpoint (a sync function, like ours,
so it pays the same thread hand-off), served by the same uvicorn on the same machine."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/echo")
def echo(body: dict[str, Any]) -> dict[str, Any]:
    return {"received": len(body)}
