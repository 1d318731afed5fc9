"""A client's web server for the Client ID Metadata Document tests: a real HTTPS server on 127.0.0.1 with a
self-signed certificate (the test Hub's service trusts it through ``NBMCP_OAUTH_CIMD_CA_FILE``), serving
whatever documents a test puts in ``routes`` and counting the fetches."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own trust anchor) and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nbmcp cimd test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class DocumentServer:
    """``routes[path] = (status, headers, body)``; ``fetches[path]`` counts the GETs."""

    def __init__(self, base: str) -> None:
        self.base = base  # https://127.0.0.1:PORT
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.fetches: Counter[str] = Counter()

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def document_server(directory: Path) -> Iterator[tuple[DocumentServer, Path]]:
    """A running HTTPS document server and the certificate to trust for it."""
    cert, key = self_signed_certificate(directory)
    holder: dict[str, DocumentServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server = holder["server"]
            server.fetches[self.path] += 1
            status, headers, body = server.routes.get(self.path, (404, {}, b"not here"))
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    holder["server"] = DocumentServer(f"https://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["server"], cert
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
