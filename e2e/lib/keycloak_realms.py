#!/usr/bin/env python3
"""Configure the stack's Keycloak through its admin REST API, idempotently.

One realm per Tenant of the given manifest (examples/tenants.yaml), each with
  - a confidential client `phoenix-dataplane` (secret $KEYCLOAK_CLIENT_SECRET; standard
    flow with PKCE allowed, direct access grants for tests), redirect URIs for loopback
    and the tenant's host,
  - protocol mappers: audience `phoenix-dataplane`, `groups` (names, no leading slash),
  - groups physicians, nurses, admins, auditors,
  - users alice@<tenant>.example (physicians) and bob@<tenant>.example (nurses), verified
    emails, password $KEYCLOAK_USER_PASSWORD;
plus the realm `e2e-mismatch`, whose frontendUrl is the same server as
http://localhost:<port>: Keycloak 26 then announces issuer, token endpoint and jwks_uri
under http://localhost:<port>/realms/e2e-mismatch, so its discovery document fetched
from $KEYCLOAK_URL (http://127.0.0.1:<port>) has a foreign issuer while every endpoint
it names still answers (an issuer check, not an unreachable JWKS, must reject it).

Environment: KEYCLOAK_URL, KEYCLOAK_ADMIN_USER, KEYCLOAK_ADMIN_PASSWORD,
KEYCLOAK_CLIENT_SECRET, KEYCLOAK_USER_PASSWORD. Argument: the tenants manifest.
Only the standard library: the manifest is read line by line (name and hostname).
"""

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

URL = os.environ["KEYCLOAK_URL"].rstrip("/")
CLIENT_ID = "phoenix-dataplane"
GROUPS = ["physicians", "nurses", "admins", "auditors"]
USERS = [("alice", "Alice", "physicians"), ("bob", "Bob", "nurses")]
MISMATCH_REALM = "e2e-mismatch"
MISMATCH_FRONTEND = URL.replace("://127.0.0.1:", "://localhost:", 1)


def tenants(path):
    """(name, hostname) of every Tenant document in a multi-document YAML file."""
    out, kind, name, host = [], None, None, None

    def flush():
        if kind == "Tenant" and name:
            out.append((name, host))

    in_metadata = False
    for line in open(path, encoding="utf-8"):
        if line.strip() == "---":
            flush()
            kind, name, host, in_metadata = None, None, None, False
            continue
        if m := re.match(r"^kind:\s*(\S+)", line):
            kind = m.group(1)
        if re.match(r"^metadata:", line):
            in_metadata = True
        elif re.match(r"^\S", line):
            in_metadata = False
        if in_metadata and (m := re.match(r"^\s+name:\s*(\S+)", line)) and name is None:
            name = m.group(1)
        if m := re.match(r"^\s+hostname:\s*(\S+)", line):
            host = m.group(1)
    flush()
    return out


class Admin:
    def __init__(self):
        self.token = None

    def login(self):
        body = urllib.parse.urlencode(
            {
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": os.environ["KEYCLOAK_ADMIN_USER"],
                "password": os.environ["KEYCLOAK_ADMIN_PASSWORD"],
            }
        ).encode()
        req = urllib.request.Request(
            f"{URL}/realms/master/protocol/openid-connect/token", data=body
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            self.token = json.load(r)["access_token"]

    def call(self, method, path, body=None, ok404=False):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{URL}/admin/realms{path}", data=data, method=method
        )
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            if ok404 and e.code == 404:
                return None
            detail = e.read().decode(errors="replace")
            raise SystemExit(f"{method} {path}: HTTP {e.code}: {detail}") from None


def mappers():
    return [
        {
            "name": "audience phoenix-dataplane",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.client.audience": CLIENT_ID,
                "access.token.claim": "true",
                "id.token.claim": "false",
                "introspection.token.claim": "true",
            },
        },
        {
            "name": "groups",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-group-membership-mapper",
            "config": {
                "claim.name": "groups",
                "full.path": "false",
                "access.token.claim": "true",
                "id.token.claim": "true",
                "userinfo.token.claim": "true",
                "introspection.token.claim": "true",
            },
        },
    ]


def ensure_realm(kc, realm, attributes=None):
    rep = {
        "realm": realm,
        "enabled": True,
        "sslRequired": "none",
        "registrationAllowed": False,
        "loginWithEmailAllowed": True,
        "attributes": attributes or {},
    }
    if kc.call("GET", f"/{realm}", ok404=True) is None:
        kc.call("POST", "", rep)
        print(f"realm {realm}: created")
    else:
        kc.call("PUT", f"/{realm}", rep)
        print(f"realm {realm}: updated")


def ensure_client(kc, realm, host):
    redirects = ["http://127.0.0.1:*", "http://localhost:*"]
    origins = ["+"]
    if host:
        # Browser login: https://<host>[:port]/auth/callback and /logged-out (Keycloak
        # takes only a trailing wildcard, so "host:*" covers every port).
        redirects += [f"https://{host}/*", f"http://{host}/*", f"https://{host}:*"]
    rep = {
        "clientId": CLIENT_ID,
        "name": "Phoenix Guardian data plane",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": os.environ["KEYCLOAK_CLIENT_SECRET"],
        "standardFlowEnabled": True,
        "directAccessGrantsEnabled": True,
        "serviceAccountsEnabled": False,
        "implicitFlowEnabled": False,
        "redirectUris": redirects,
        "webOrigins": origins,
        "attributes": {"pkce.code.challenge.method": "", "post.logout.redirect.uris": "+"},
    }
    found = kc.call("GET", f"/{realm}/clients?clientId={CLIENT_ID}")
    if not found:
        kc.call("POST", f"/{realm}/clients", rep)
        found = kc.call("GET", f"/{realm}/clients?clientId={CLIENT_ID}")
    cid = found[0]["id"]
    kc.call("PUT", f"/{realm}/clients/{cid}", {**rep, "id": cid})
    have = {m["name"]: m for m in kc.call("GET", f"/{realm}/clients/{cid}/protocol-mappers/models")}
    for m in mappers():
        if m["name"] in have:
            kc.call(
                "PUT",
                f"/{realm}/clients/{cid}/protocol-mappers/models/{have[m['name']]['id']}",
                {**m, "id": have[m["name"]]["id"]},
            )
        else:
            kc.call("POST", f"/{realm}/clients/{cid}/protocol-mappers/models", m)
    print(f"realm {realm}: client {CLIENT_ID} with {len(mappers())} mappers")


def ensure_groups(kc, realm):
    ids = {}
    for g in kc.call("GET", f"/{realm}/groups?briefRepresentation=true&max=1000"):
        ids[g["name"]] = g["id"]
    for name in GROUPS:
        if name not in ids:
            kc.call("POST", f"/{realm}/groups", {"name": name})
    for g in kc.call("GET", f"/{realm}/groups?briefRepresentation=true&max=1000"):
        ids[g["name"]] = g["id"]
    return ids


def ensure_users(kc, realm, group_ids):
    for username, first, group in USERS:
        email = f"{username}@{realm}.example"
        rep = {
            "username": username,
            "email": email,
            "emailVerified": True,
            "firstName": first,
            "lastName": realm,
            "enabled": True,
            "requiredActions": [],
        }
        q = urllib.parse.quote(username)
        found = kc.call("GET", f"/{realm}/users?username={q}&exact=true")
        if not found:
            kc.call("POST", f"/{realm}/users", rep)
            found = kc.call("GET", f"/{realm}/users?username={q}&exact=true")
        uid = found[0]["id"]
        kc.call("PUT", f"/{realm}/users/{uid}", rep)
        kc.call(
            "PUT",
            f"/{realm}/users/{uid}/reset-password",
            {"type": "password", "value": os.environ["KEYCLOAK_USER_PASSWORD"], "temporary": False},
        )
        for g in kc.call("GET", f"/{realm}/users/{uid}/groups"):
            if g["name"] != group:
                kc.call("DELETE", f"/{realm}/users/{uid}/groups/{g['id']}")
        kc.call("PUT", f"/{realm}/users/{uid}/groups/{group_ids[group]}")
        print(f"realm {realm}: user {username} <{email}> in {group}")


def main():
    kc = Admin()
    found = tenants(sys.argv[1])
    if not found:
        raise SystemExit(f"no Tenant found in {sys.argv[1]}")
    for realm, host in found:
        kc.login()  # admin tokens live 60 s: one per realm
        ensure_realm(kc, realm)
        ensure_client(kc, realm, host)
        ensure_users(kc, realm, ensure_groups(kc, realm))
    if MISMATCH_FRONTEND == URL:
        raise SystemExit(f"KEYCLOAK_URL {URL} is not http://127.0.0.1:<port>")
    kc.login()
    ensure_realm(kc, MISMATCH_REALM, {"frontendUrl": MISMATCH_FRONTEND})
    ensure_client(kc, MISMATCH_REALM, None)
    ensure_users(kc, MISMATCH_REALM, ensure_groups(kc, MISMATCH_REALM))


if __name__ == "__main__":
    main()
