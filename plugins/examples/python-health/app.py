"""A deployer hook written in Python: an HTTP health check of the new release.

It GETs `url` and passes when the answer has status `expect-status` (default 200) and,
if `expect-json` is given, a JSON body containing those key/value pairs, e.g.
params = { url = "https://test.shop.example.com/health", expect-json = { status = "ok" } }.

Build (offline, with componentize-py from PyPI), from this directory:
    componentize-py -d wit -w health-hook componentize app -o python-health.wasm
Then `deployer plugin inspect python-health.wasm` prints the sha256 for deployer.toml,
where the plugin needs `http-allow` for the hosts it checks (its world, wit/world.wit,
imports only log and http, so nothing else has to be granted).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log, types


def result(status, detail):
    return types.GateResult(name="python-health", status=status, detail=detail, observed=None)


def parse(params):
    """The parameters, or a list of ParamError."""
    try:
        p = json.loads(params or "{}")
    except ValueError as e:
        return None, [types.ParamError(field="", message=f"not JSON: {e}")]
    errors = []
    url = p.get("url", "")
    if not (url.startswith("http://") or url.startswith("https://")):
        errors.append(types.ParamError(field="url", message="must be an http(s) URL"))
    if not isinstance(p.get("expect-status", 200), int):
        errors.append(types.ParamError(field="expect-status", message="must be a number"))
    return p, errors


class Hook(exports.Hook):
    def info(self):
        return types.PluginInfo(name="python-health", version="0.1.0",
                                description="HTTP health check, written in Python")

    def validate(self, params):
        _, errors = parse(params)
        if errors:
            raise Err(errors)

    def run(self, ctx):
        p, errors = parse(ctx.params)
        if errors:
            return result(types.GateStatus.FAIL, "; ".join(f"{e.field}: {e.message}" for e in errors))
        request = http.Request(method="GET", url=p["url"], headers=[], body=b"", timeout_ms=5000)
        try:
            response = http.send(request)
        except Err as e:
            return result(types.GateStatus.INCONCLUSIVE, f"cannot reach {p['url']}: {e.value}")
        want = p.get("expect-status", 200)
        if response.status != want:
            return result(types.GateStatus.FAIL, f"status {response.status}, expected {want}")
        expected = p.get("expect-json")
        if expected:
            try:
                body = json.loads(response.body)
            except ValueError:
                return result(types.GateStatus.FAIL, "body is not JSON")
            wrong = {k: body.get(k) for k, v in expected.items() if body.get(k) != v}
            if wrong:
                return result(types.GateStatus.FAIL, f"unexpected {wrong}")
        log.log(log.Level.INFO, f"{p['url']} healthy for {ctx.new_release}")
        return result(types.GateStatus.PASS, f"status {response.status}")
