"""pusherd serving wss:// and https:// itself ([server.tls]), checked by the conformance
suite's real clients (pusher-js and Laravel Echo in Node and Chromium over wss, the Python
and Node SDKs over https) against a certificate signed by a CA made for the test."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conformance.test_protocol_suite import CONFIG, TLS_CASES, results_of, run_suite
from tests.support.pusherd_process import run_pusherd


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA, and a server certificate it signed for 127.0.0.1 and localhost:
    (ca.pem, cert.pem, key.pem)."""
    ca_key, ca = directory / "ca-key.pem", directory / "ca.pem"
    key, csr, cert = directory / "key.pem", directory / "server.csr", directory / "cert.pem"
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        "/CN=pusherd test CA", "-keyout", str(ca_key), "-out", str(ca),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
        "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


async def test_pusherd_serves_wss_and_https_on_its_own_port(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_certificate(tmp_path)
    # [server.tls] must follow the [server] keys in TOML: put it after them.
    config = CONFIG.replace("\n[[apps]]", f'\n[server.tls]\ncert_file = "{cert}"\n'
                            f'key_file = "{key}"\n\n[[apps]]', 1)
    with run_pusherd(config) as server:
        only = [arg for case in TLS_CASES for arg in ("--only", case)]
        code, output = await run_suite(server.port, "--tls", "--tls-ca", str(ca), *only,
                                       timeout=300)
    print(output)
    results = results_of(output)
    assert results.get("tls.wss-and-https") == "PASS"
    assert results.get("signin.pusher-js") == "PASS"  # pusher-js over wss
    assert results.get("browser.reverb.connect-public") == "PASS"
    assert "N/A" not in results.values() and "FAIL" not in results.values()
    assert code == 0
    banner = "".join(server.output)
    assert f"https://127.0.0.1:{server.port}" in banner
