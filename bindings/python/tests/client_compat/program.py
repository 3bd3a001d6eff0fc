"""A small program written for httpx; test_client_compat.py runs it as is and with the import
line swapped for ``import portway as httpx``, and compares what it prints.

    python program.py BASE_URL OTHER_ORIGIN_URL
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import httpx  # the one line the test swaps

base, other = sys.argv[1], sys.argv[2]
out: dict[str, Any] = {}


def seen(r: Any) -> dict[str, Any]:
    """Every observable of a response the program can compare across libraries."""
    return {
        "status": r.status_code,
        "reason": r.reason_phrase,
        "headers": sorted((k, v) for k, v in r.headers.multi_items() if k not in ("date", "server")),
        "content-type": [r.headers.get("Content-Type"), r.headers.get("CONTENT-TYPE"), "content-type" in r.headers],
        "content": r.content.decode("latin-1"),
        "text": r.text,
        "encoding": r.encoding,
        "url": str(r.url),
        "http_version": r.http_version,
        "elapsed": isinstance(r.elapsed, datetime.timedelta),
        "flags": [r.is_success, r.is_redirect, r.is_error, r.is_client_error, r.is_server_error, r.is_informational],
        "request": [r.request.method, str(r.request.url)],
        "history": [[h.status_code, str(h.url), h.request.method] for h in r.history],
    }


def outcome(fn: Any) -> Any:
    try:
        r = fn()
    except httpx.HTTPStatusError as exc:
        return {"HTTPStatusError": exc.response.status_code, "request": [exc.request.method, str(exc.request.url)]}
    except httpx.TooManyRedirects as exc:
        return {"TooManyRedirects": str(exc.request.url)}
    return {"ok": seen(r)}


with httpx.Client(base_url=base, headers={"X-Client": "c1"}, params={"api": "v1"}, timeout=10.0) as client:
    out["get"] = seen(client.get("/echo", params={"q": "a b", "n": 3, "flag": True, "many": ["x", "y"]}))
    out["get-url-query"] = seen(client.get("/echo?keep=1&q=old", params={"q": "new"}))
    out["get-headers"] = seen(client.get("/echo", headers={"x-client": "override", "X-Extra": "e"}))
    out["post-json"] = seen(client.post("/echo", json={"name": "caf\u00e9", "n": [1, 2.5, None, True]}))
    out["post-form"] = seen(client.post("/echo", data={"a": "1 2", "b": ["x", "y"], "c": None}))
    out["post-content"] = seen(client.post("/echo", content=b"raw\x00bytes", headers={"Content-Type": "application/octet-stream"}))
    out["put"] = seen(client.put("/echo", content="put body"))
    out["patch"] = seen(client.patch("/echo", json=[1, 2]))
    out["delete"] = seen(client.delete("/echo"))
    out["head"] = seen(client.head("/echo"))
    out["options"] = seen(client.options("/echo"))
    out["auth"] = seen(client.get("/echo", auth=("user", "p\u00e4ss")))
    out["basic-auth"] = seen(client.get("/echo", auth=httpx.BasicAuth("u", "p")))
    out["json"] = client.get("/json").json()
    out["latin1"] = seen(client.get("/latin1"))
    out["multi"] = seen(client.get("/multi"))
    out["multi-list"] = client.get("/multi").headers.get_list("x-multi")
    out["404"] = outcome(lambda: client.get("/status/404").raise_for_status())
    out["500"] = outcome(lambda: client.get("/status/500").raise_for_status())
    out["200-raise"] = outcome(lambda: client.get("/status/200").raise_for_status())
    out["redirect-not-followed"] = seen(client.get("/redirect/302"))
    out["redirect-raise"] = outcome(lambda: client.get("/redirect/302").raise_for_status())
    for code in (301, 302, 303, 307, 308):
        r = client.post(f"/redirect/{code}", json={"k": code}, follow_redirects=True)
        out[f"post-{code}"] = seen(r)
    out["get-chain"] = seen(client.get("/chain/3", follow_redirects=True))
    out["loop"] = outcome(lambda: client.get("/loop", follow_redirects=True))
    out["cross-origin-auth"] = seen(client.get("/to-other", auth=("u", "p"), follow_redirects=True, params={"to": other}))

with httpx.Client(follow_redirects=True, max_redirects=2) as client2:
    out["get-quoted"] = seen(client2.get(base + '/echo/a b/caf\u00e9?x=\u00e9 "y"&z=%41'))
    out["max-redirects-ok"] = seen(client2.get(base + "/chain/1"))
    out["max-redirects"] = outcome(lambda: client2.get(base + "/chain/2"))

json.dump(out, sys.stdout, indent=1, sort_keys=True)
