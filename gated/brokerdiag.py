"""Broker trouble in words: what an operator reads when a gate, a ledger or a tool cannot talk to
the broker, instead of a reason code (135) or an errno without its file.

- `reason_words(code)`: an MQTT v5 reason code (int or paho's ReasonCode) as words
  ("not authorised", "bad user name or password", ...).
- `tls_file_problems(ca, cert, key)`: each TLS file that is missing, unreadable or not what its
  name says, named; a key that does not belong to its certificate.
- `certificate_cn(path)`: the CN a client certificate gives the broker as its user name.
- `probe(settings, timeout)`: TCP and TLS to the broker, before MQTT: None when both work, else
  the cause (connection refused, no route, our side does not trust the broker's certificate, the
  broker refused our client certificate or wants one).
- `link_words(item)`: a state item of gated.mqtt.MqttLink's inbox as a log line's words.
"""

from __future__ import annotations

import os
import socket
import ssl

# MQTT v5 reason codes (OASIS MQTT 5.0, 2.4) that a gated process can meet, in an operator's words
REASONS = {
    0: "ok",
    4: "disconnected with a last will",
    16: "no subscriber yet (the message is kept)",
    128: "unspecified error at the broker",
    129: "malformed packet",
    130: "protocol error",
    131: "refused by the broker for this implementation",
    133: "client id not valid",
    134: "bad user name or password",
    135: "not authorised",
    136: "server unavailable",
    137: "server busy",
    138: "banned",
    139: "the broker is shutting down",
    140: "bad authentication method",
    141: "keep-alive timeout",
    142: "session taken over by another client with the same client id",
    143: "topic filter not valid",
    144: "topic name not valid",
    147: "receive maximum exceeded",
    149: "packet too large",
    151: "quota exceeded",
    152: "administrative action",
    153: "payload format not valid",
    156: "use another server",
    157: "server moved",
    159: "connection rate exceeded",
}

NOT_AUTHORISED_HINT = (
    "the broker's access rules do not let this identity (with certificates: the CN) do it; "
    "for a gate, the CN must be its [gate] id and the rules must list it "
    "(systemd/mosquitto/make-dynsec.py ... GATE)"
)


def reason_words(code) -> str:
    """'not authorised' for 135 (or paho's ReasonCode of it); unknown codes keep their number."""
    value = getattr(code, "value", code)
    try:
        value = int(value)
    except (TypeError, ValueError):
        return str(code)
    words = REASONS.get(value)
    return words if words is not None else f"reason code {value}"


def link_words(item: tuple) -> str:
    """An MqttLink inbox state item ('connected', generation, session_present) and the like, in words."""
    kind = item[0]
    if kind == "connected":
        return "connected, session resumed" if len(item) > 2 and item[2] else "connected, new session"
    if kind == "disconnected":
        return f"disconnected: {item[1]}" if len(item) > 1 and item[1] not in ("Success", "ok") else "disconnected"
    if kind == "refused":
        return str(item[1])
    return kind


def _readable(path: str, what: str) -> str | None:
    if not os.path.exists(path):
        return f"{what} {path}: no such file"
    if os.path.isdir(path):
        return f"{what} {path}: is a directory, not a file"
    if not os.access(path, os.R_OK):
        return f"{what} {path}: not readable by this user (check its owner and mode)"
    return None


def certificate_cn(path: str) -> str | None:
    """The subject CN of the PEM certificate at `path` (None without one); ValueError if not a certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def tls_file_problems(ca_file: str | None, cert_file: str | None, key_file: str | None) -> list[str]:
    """Every problem with the TLS files, each naming its file; [] when they load together."""
    problems = []
    for path, what in ((ca_file, "CA file"), (cert_file, "client certificate"), (key_file, "client key")):
        if path:
            problem = _readable(str(path), what)
            if problem:
                problems.append(problem)
    if problems:
        return problems
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except ssl.SSLError:
            problems.append(f"CA file {ca_file}: not a PEM certificate")
    if cert_file and key_file:
        try:
            certificate_cn(str(cert_file))
        except ValueError:
            problems.append(f"client certificate {cert_file}: not a PEM certificate")
            return problems
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
                problems.append(f"client key {key_file} does not belong to the certificate {cert_file}")
            else:
                problems.append(f"client key {key_file}: not a usable PEM private key ({exc.reason or exc})")
    return problems


def _tls_context(settings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the broker and its host name, as paho does
    if settings.ca_file:
        context.load_verify_locations(cafile=settings.ca_file)
    else:
        context.load_default_certs()
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


def probe(settings, timeout: float = 5.0) -> str | None:
    """None when a TCP connection and (for mqtts) a TLS handshake with the broker work; else the cause."""
    where = f"{settings.host}:{settings.port}"
    if settings.tls:
        problems = tls_file_problems(settings.ca_file, settings.cert_file, settings.key_file)
        if problems:
            return "; ".join(problems)
    try:
        sock = socket.create_connection((settings.host, settings.port), timeout=timeout)
    except ConnectionRefusedError:
        return f"connection refused at {where}: no broker listens there (is it running, is the port right?)"
    except socket.timeout:
        return f"no answer from {where} within {timeout:g} s (a firewall, or the wrong host?)"
    except OSError as exc:
        return f"cannot reach {where}: {exc.strerror or exc}"
    if not settings.tls:
        sock.close()
        return None
    try:
        with _tls_context(settings).wrap_socket(sock, server_hostname=settings.host) as tls:
            tls.settimeout(min(timeout, 1.0))
            try:  # TLS 1.3: a refused client certificate shows only at the first read
                tls.recv(1)
            except (socket.timeout, TimeoutError):
                pass
    except ssl.SSLCertVerificationError as exc:
        return _our_side(exc, settings)
    except ssl.SSLError as exc:
        return _their_side(exc, settings)
    except (ConnectionResetError, BrokenPipeError):
        return f"the broker at {where} closed the TLS connection during the handshake" + (
            "" if settings.cert_file else ": it probably wants a client certificate (set cert and key)"
        )
    except OSError as exc:
        return f"TLS with {where} failed: {exc.strerror or exc}"
    return None


def _our_side(exc: ssl.SSLCertVerificationError, settings) -> str:
    why = exc.verify_message or exc.reason or str(exc)
    if exc.verify_code == 62 or "hostname" in str(why).lower() or "IP address mismatch" in str(why):
        return (
            f"TLS verification failed on our side: the broker's certificate is not for {settings.host} "
            f"({why}); connect by the name in its certificate, or remake it (gated certs --server-name)"
        )
    ca = f"the CA file {settings.ca_file}" if settings.ca_file else "the system's CAs"
    return (
        f"TLS verification failed on our side: the broker's certificate is not signed by {ca} ({why}); "
        f"use the site's ca.crt"
    )


def _their_side(exc: ssl.SSLError, settings) -> str:
    reason = (exc.reason or str(exc)).upper()
    if "CERTIFICATE_REQUIRED" in reason or ("HANDSHAKE_FAILURE" in reason and not settings.cert_file):
        return (
            "TLS refused by the broker: it requires a client certificate and none was given "
            "(set the certificate and its key: [mqtt.tls] cert_file, key_file, or --cert/--key)"
        )
    if any(
        word in reason
        for word in (
            "UNKNOWN_CA",
            "BAD_CERTIFICATE",
            "CERTIFICATE_UNKNOWN",
            "DECRYPT_ERROR",
            "HANDSHAKE_FAILURE",
            "UNSUPPORTED_CERTIFICATE",
        )
    ):
        return (
            f"TLS verification failed on the broker's side: it refused our client certificate "
            f"{settings.cert_file} ({exc.reason}); is it signed by the site CA the broker uses?"
        )
    if "CERTIFICATE_EXPIRED" in reason:
        return f"TLS refused by the broker: our client certificate {settings.cert_file} has expired"
    if "WRONG_VERSION_NUMBER" in reason:
        return f"{settings.host}:{settings.port} does not speak TLS (a plain mqtt:// port?)"
    return f"TLS with {settings.host}:{settings.port} failed: {exc.reason or exc}"


def explain_oserror(exc: OSError) -> str:
    """An OSError with its file: '[Errno 2] No such file or directory' -> 'No such file or directory: PATH'."""
    name = exc.filename or getattr(exc, "filename2", None)
    text = exc.strerror or str(exc)
    return f"{text}: {name}" if name else text
