"""A stand-in for Amazon Managed Service for Prometheus (AMP) that checks SigV4.

Usage: sigv4_prometheus.py ACCESS_KEY SECRET_KEY REGION

Serves, on a free 127.0.0.1 port (printed as `{"port": N}` on the first line of stdout),
the query API of one workspace as AMP does:

    GET|POST /workspaces/ws-test/api/v1/query
    GET|POST /workspaces/ws-test/api/v1/query_range

(POST with an `application/x-www-form-urlencoded` body, as Prometheus allows). Every
request must carry a SigV4 `Authorization` header for service `aps` in REGION with the
given credentials. The signature is recomputed with botocore's own `SigV4Auth` (the
signer every AWS SDK for Python uses) from what arrived: the method, the path, the query,
the headers named in SignedHeaders and the body. A missing, malformed or wrong signature
is refused with 403 and `{"message": "..."}` as AMP does; a good one gets a fixed answer:
one series with the value "0.5" (a vector for `query`, a one-point matrix for
`query_range`, as a Prometheus client expects of each).

Two choices make the check stricter than "whatever botocore accepts", so that a client
cannot pass by accident:
- the query is canonicalised from what it *means*: decoded as a form (`+` is a space, as
  Prometheus itself reads it) and re-encoded the SigV4 way, so two spellings of the same
  query verify alike and a query changed after signing does not;
- the body must be signed: `x-amz-content-sha256`, when sent, must be the body's digest
  (`UNSIGNED-PAYLOAD` is refused), so a body changed after signing is caught.

`GET /_verifier/requests` (unsigned, not part of AMP) returns every API request seen so
far with its verdict, so a test can assert it was reached and what was signed.
"""

import hashlib
import hmac
import json
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

WORKSPACE = "/workspaces/ws-test"
SERVICE = "aps"
# AWS refuses a signature dated further than this from its own clock.
MAX_SKEW_SECONDS = 5 * 60

ACCESS_KEY, SECRET_KEY, REGION = sys.argv[1], sys.argv[2], sys.argv[3]
SIGNER = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), SERVICE, REGION)

seen = []
seen_lock = threading.Lock()


class Refused(Exception):
    """The request is not signed as AMP requires; the message says why."""


def parse_authorization(value):
    """The credential, signed header names and signature of an Authorization header."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise Refused(f"Authorization must use AWS4-HMAC-SHA256, not {algorithm!r}")
    fields = {}
    for part in rest.split(","):
        key, _, val = part.strip().partition("=")
        fields[key] = val
    for key in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(key):
            raise Refused(f"Authorization header is missing {key}=")
    return fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]


def verify(method, raw_path, headers, body):
    """Check the request's SigV4 signature; return the signed header names, or raise."""
    authorization = headers.get("authorization")
    if not authorization:
        raise Refused("Missing Authentication Token")
    credential, signed, signature = parse_authorization(authorization)
    timestamp = headers.get("x-amz-date")
    if not timestamp:
        raise Refused("the request has no X-Amz-Date header")
    try:
        signed_at = datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise Refused(f"X-Amz-Date {timestamp!r} is not YYYYMMDDTHHMMSSZ")
    if abs(time.time() - signed_at.timestamp()) > MAX_SKEW_SECONDS:
        raise Refused(f"Signature expired: {timestamp} is more than 5 minutes from now")
    scope = f"{ACCESS_KEY}/{timestamp[:8]}/{REGION}/{SERVICE}/aws4_request"
    if credential != scope:
        raise Refused(f"Credential should be scoped to {scope!r}, not {credential!r}")
    for name in ("host", "x-amz-date"):
        if name not in signed:
            raise Refused(f"SignedHeaders must include {name}")
    not_signable = [n for n in signed if n in SIGNED_HEADERS_BLACKLIST]
    if not_signable:
        raise Refused(f"headers {not_signable} are never signed by AWS signers; leave them out of SignedHeaders")
    missing = [n for n in signed if n not in headers]
    if missing:
        raise Refused(f"signed headers {missing} are not in the request")
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        raise Refused("x-amz-content-sha256 is not the SHA-256 of the body (the payload must be signed)")

    parts = urlsplit(raw_path)
    # Decoded as Prometheus reads it; botocore re-encodes each pair the SigV4 way.
    params = parse_qsl(parts.query, keep_blank_values=True)
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{parts.path}",
        headers={name: headers[name] for name in signed},
        params=params,
        data=body,
    )
    request.context["timestamp"] = timestamp
    canonical = SIGNER.canonical_request(request)
    expected = SIGNER.signature(SIGNER.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        raise Refused(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. The canonical request was:\n"
            + canonical
        )
    return signed


def answer(kind, now):
    """The fixed answer: one series at 0.5, shaped as each endpoint's clients expect."""
    metric = {"__name__": "ground_answer", "workspace": "ws-test"}
    if kind == "query":
        result = {"resultType": "vector", "result": [{"metric": metric, "value": [now, "0.5"]}]}
    else:
        result = {"resultType": "matrix", "result": [{"metric": metric, "values": [[now, "0.5"]]}]}
    return {"status": "success", "data": result}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def handle_any(self):
        body = self.read_body()
        path = urlsplit(self.path).path
        if self.command == "GET" and path == "/_verifier/requests":
            with seen_lock:
                return self.send_json(200, list(seen))
        kind = {f"{WORKSPACE}/api/v1/query": "query", f"{WORKSPACE}/api/v1/query_range": "query_range"}.get(path)
        if kind is None:
            return self.send_json(404, {"message": f"no such path {path!r}: this stand-in serves {WORKSPACE}/api/v1/query and /query_range"})
        # Header names lower-cased; repeated headers joined as SigV4 joins them.
        headers = {}
        for name in self.headers.keys():
            lname = name.lower()
            if lname not in headers:
                headers[lname] = ",".join(v.strip() for v in self.headers.get_all(name))
        params = parse_qsl(urlsplit(self.path).query, keep_blank_values=True)
        if self.command == "POST" and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        record = {
            "method": self.command,
            "path": path,
            "params": params,
            "body": body.decode("utf-8", "replace"),
            "signed_headers": [],
        }
        try:
            record["signed_headers"] = verify(self.command, self.path, headers, body)
        except Refused as refused:
            record["verdict"] = str(refused)
            with seen_lock:
                seen.append(record)
            return self.send_json(403, {"message": str(refused)})
        record["verdict"] = "ok"
        with seen_lock:
            seen.append(record)
        self.send_json(200, answer(kind, time.time()))

    do_GET = handle_any
    do_POST = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
