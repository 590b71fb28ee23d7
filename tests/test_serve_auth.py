"""Auth with a JWKS (Supabase's asymmetric signing keys), from a file or over HTTP."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from tests.test_serve import SECRET, app_settings, rec, warm_user, world  # noqa: F401  (fixture)
from twotower.config import Settings
from twotower.serve import create_app
from twotower.serve.auth import fetch_jwks

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private, kid: str) -> dict:
    algo = jwt.algorithms.RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    d = json.loads(algo.to_jwk(private.public_key()))
    return {**d, "kid": kid, "use": "sig", "alg": "RS256" if algo is jwt.algorithms.RSAAlgorithm else "ES256"}


def signed(sub: str, private, kid: str, alg: str, exp_in: int = 3600) -> dict:
    t = jwt.encode({"sub": sub, "exp": int(time.time()) + exp_in, "aud": "authenticated"}, private, algorithm=alg,
                   headers={"kid": kid})
    return {"Authorization": f"Bearer {t}"}


def test_jwks_file_with_a_secret_beside_it(world, settings, tmp_path):  # noqa: F811
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(RSA, "k-rsa"), jwk(EC, "k-ec")]}))
    u = warm_user(world)
    with TestClient(create_app(app_settings(settings, TWOTOWER_JWKS_URL=str(path)))) as c:
        assert rec(c, u, headers=signed(u, RSA, "k-rsa", "RS256")).status_code == 200
        assert rec(c, u, headers=signed(u, EC, "k-ec", "ES256")).status_code == 200
        hs = jwt.encode({"sub": u, "exp": int(time.time()) + 60, "aud": "authenticated"}, SECRET, algorithm="HS256")
        assert rec(c, u, headers={"Authorization": f"Bearer {hs}"}).status_code == 200  # legacy secret still works
        forged = rec(c, u, headers=signed(u, OTHER, "k-rsa", "RS256"))  # right kid, wrong key
        assert forged.status_code == 401
        assert rec(c, u, headers=signed(u, RSA, "k-rsa", "RS256", exp_in=-5)).status_code == 401
        assert rec(c, "someone-else", headers=signed(u, RSA, "k-rsa", "RS256")).status_code == 403
        # a kid we do not know is tried against the secret, which an RS256 token cannot pass
        assert rec(c, u, headers=signed(u, OTHER, "k-new", "RS256")).status_code == 401


class Keys(BaseHTTPRequestHandler):
    doc: dict = {}

    def do_GET(self):  # noqa: N802
        body = json.dumps(Keys.doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def jwks_server():
    srv = HTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/auth/v1/.well-known/jwks.json"
    srv.shutdown()


def test_jwks_over_http_and_key_rotation(world, settings, jwks_server):  # noqa: F811
    Keys.doc = {"keys": [jwk(RSA, "old")]}
    u = warm_user(world)
    s = Settings(DATABASE_URL=settings.database_url, TWOTOWER_HOME=settings.home, TWOTOWER_JWKS_URL=jwks_server)
    with TestClient(create_app(s)) as c:
        auth = c.app.state.auth
        assert rec(c, u, headers=signed(u, RSA, "old", "RS256")).status_code == 200
        new = rec(c, u, headers=signed(u, EC, "new", "ES256"))
        assert new.status_code == 401 and "unknown key id" in new.json()["detail"]
        assert auth.unknown_kid and not auth.jwks_due(300)  # re-read 30 s after an unknown kid, not at once
        Keys.doc = {"keys": [jwk(RSA, "old"), jwk(EC, "new")]}  # the key is rotated in
        auth.refresh_jwks()
        assert rec(c, u, headers=signed(u, EC, "new", "ES256")).status_code == 200


def test_bad_jwks_sources_are_one_clear_line(tmp_path, jwks_server):
    with pytest.raises(ValueError, match="cannot read the JWKS"):
        fetch_jwks(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the JWKS"):
        fetch_jwks(str(tmp_path / "bad.json"))
    Keys.doc = {"keys": [{k: v for k, v in jwk(RSA, "x").items() if k != "kid"}]}
    with pytest.raises(ValueError, match="no signing key with a kid"):
        fetch_jwks(jwks_server)


ISS = "https://abcdefghijklmnop.supabase.co/auth/v1"


def hs(claims: dict) -> dict:
    t = jwt.encode({"exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {t}"}


def test_claims_matrix_as_supabase_issues_them(world, settings):  # noqa: F811
    u = warm_user(world)
    user = {"sub": u, "aud": "authenticated", "role": "authenticated", "iss": ISS}
    service = {"iss": "supabase", "ref": "abcdefghijklmnop", "role": "service_role"}  # Supabase's service key
    anon = {"iss": "supabase", "ref": "abcdefghijklmnop", "role": "anon"}  # the public key
    cases = [  # (claims, status without an issuer configured, status with TWOTOWER_JWT_ISSUER)
        (user, 200, 200),
        ({**user, "aud": ["authenticated", "other"]}, 200, 200),
        ({k: v for k, v in user.items() if k != "aud"}, 401, 401),
        ({**user, "aud": "other"}, 401, 401),
        ({**user, "iss": "https://evil.example/auth/v1"}, 200, 401),
        ({k: v for k, v in user.items() if k != "iss"}, 200, 401),
        ({**user, "role": "anon"}, 401, 401),
        ({k: v for k, v in user.items() if k != "sub"}, 401, 401),
        (service, 200, 200),
        ({**service, "iss": ISS}, 200, 200),
        ({**service, "iss": "someone-else"}, 200, 401),
        (anon, 401, 401),
    ]
    for extra, col in (({}, 1), ({"TWOTOWER_JWT_ISSUER": ISS}, 2)):
        with TestClient(create_app(app_settings(settings, **extra))) as c:
            for case in cases:
                r = rec(c, u, headers=hs(case[0]))
                assert r.status_code == case[col], (extra, case[0], r.text)
                if r.status_code == 401:
                    assert r.headers["www-authenticate"] == "Bearer"
    # the audience check can be turned off for issuers that set none
    with TestClient(create_app(app_settings(settings, TWOTOWER_JWT_AUDIENCE=""))) as c:
        assert rec(c, u, headers=hs({"sub": u})).status_code == 200
