#!/usr/bin/env python3
"""A stand-in identity provider for the Portcullis identity e2e tests: mints JWTs with PyJWT.

Used two ways: `mcp_client.py --auth-flow` imports `mint()` to get its access token, and
tests run it as a command to get tokens for the negative cases (wrong audience, expired,
unknown key, `alg: none`), printing one JSON line to stdout:

    {"token": "<jwt>", "sha256": "<hex of the token>", "jti": "...", "claims": {...}}

Usage:
    mint_token.py --key PEM --kid KID --alg RS256|ES256 --issuer ISS --aud AUD \
        --subject S [--agent A] [--tenant T] [--scope "mcp tools:echo"] [--lifetime N] \
        [--expired] [--alg-none] [--no-kid]

--expired issues a token that expired an hour ago (iat two hours ago); --alg-none makes an
unsigned token (`{"alg": "none"}` header, empty signature) with the same claims; --no-kid
leaves `kid` out of the header. The keys are the test-only ones in tests/fixtures/identity.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import time
from typing import Any

import jwt


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims_for(
    *,
    issuer: str,
    aud: str,
    subject: str,
    agent: str | None = None,
    tenant: str | None = None,
    scope: str | None = None,
    lifetime: int = 300,
    expired: bool = False,
) -> dict[str, Any]:
    now = int(time.time())
    iat = now - 7200 if expired else now
    exp = now - 3600 if expired else now + lifetime
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": aud,
        "sub": subject,
        "iat": iat,
        "exp": exp,
        "jti": _b64u(secrets.token_bytes(16)),
    }
    if agent is not None:
        claims["act"] = {"sub": agent}
        claims["azp"] = agent
    if tenant is not None:
        claims["tenant"] = tenant
    if scope is not None:
        claims["scope"] = scope
    return claims


def mint(
    claims: dict[str, Any], *, key_pem: bytes, alg: str, kid: str | None, alg_none: bool = False
) -> str:
    headers: dict[str, Any] = {"typ": "JWT"}
    if kid is not None:
        headers["kid"] = kid
    if alg_none:
        # PyJWT refuses to sign with "none" given a key; build the unsigned JWS by hand.
        header = {"alg": "none", **headers}
        parts = [json.dumps(p, separators=(",", ":")).encode() for p in (header, claims)]
        return ".".join(_b64u(p) for p in parts) + "."
    return jwt.encode(claims, key_pem, algorithm=alg, headers=headers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--key", required=True, metavar="PEM", help="private key (PEM) to sign with")
    p.add_argument("--kid", help="kid header value")
    p.add_argument("--alg", default="RS256", choices=["RS256", "ES256"])
    p.add_argument("--issuer", required=True)
    p.add_argument("--aud", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--agent")
    p.add_argument("--tenant")
    p.add_argument("--scope", help='space-separated, e.g. "mcp tools:echo"')
    p.add_argument("--lifetime", type=int, default=300, help="seconds (default 300)")
    p.add_argument("--expired", action="store_true", help="exp an hour in the past")
    p.add_argument("--alg-none", action="store_true", help="unsigned token, alg none")
    p.add_argument("--no-kid", action="store_true", help="no kid header")
    args = p.parse_args()

    claims = claims_for(
        issuer=args.issuer,
        aud=args.aud,
        subject=args.subject,
        agent=args.agent,
        tenant=args.tenant,
        scope=args.scope,
        lifetime=args.lifetime,
        expired=args.expired,
    )
    with open(args.key, "rb") as f:
        key_pem = f.read()
    token = mint(claims, key_pem=key_pem, alg=args.alg, kid=None if args.no_kid else args.kid, alg_none=args.alg_none)
    line = {"token": token, "sha256": sha256_hex(token), "jti": claims["jti"], "claims": claims}
    sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
