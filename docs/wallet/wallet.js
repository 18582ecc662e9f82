// gated wallet page: renders the rotating GT2 code of a dynamic ticket (PROTOCOL §3), in the browser.
//
//   GT2 text = "GT2:" + base45(CBOR [ticket: bstr (the COSE_Sign1 bytes), step: uint, devsig: bstr(64)])
//   step     = floor(unix_seconds / 30)
//   devsig   = Ed25519 by the holder-device key over "GT2" || cti (16 bytes) || step (u64 big-endian)
//
// Inputs: TICKET.ticket (raw COSE bytes) and TICKET.devkey (PKCS#8 PEM), as `gated issue --dynamic
// --out DIR` writes them, from the file pickers or from the URL fragment
// `#ticket=<base64url>&key=<base64url of the PEM or of its DER>` (a fragment never leaves the device).
// `?now=<unix seconds>` fixes the time (demos, tests). Nothing is sent anywhere; WebCrypto signs.
"use strict";

const STEP_SECONDS = 30;
const BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

function base45Encode(bytes) {
  let out = "";
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    let n = bytes[i] * 256 + bytes[i + 1];
    const c = n % 45; n = (n - c) / 45;
    const d = n % 45; const e = (n - d) / 45;
    out += BASE45[c] + BASE45[d] + BASE45[e];
  }
  if (bytes.length % 2) {
    const n = bytes[bytes.length - 1];
    out += BASE45[n % 45] + BASE45[Math.floor(n / 45)];
  }
  return out;
}

// --- just enough CBOR: decode a COSE_Sign1 and its claims, encode [bstr, uint, bstr] -----------
function cborDecode(bytes) {
  let pos = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  function arg(info) {
    if (info < 24) return info;
    if (info === 24) return bytes[pos++];
    if (info === 25) { const v = view.getUint16(pos); pos += 2; return v; }
    if (info === 26) { const v = view.getUint32(pos); pos += 4; return v; }
    if (info === 27) { const v = Number(view.getBigUint64(pos)); pos += 8; return v; }
    throw new Error("unsupported CBOR length " + info);
  }
  function item() {
    const first = bytes[pos++];
    const major = first >> 5, info = first & 31;
    if (major === 7) {
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22 || info === 23) return null;
      throw new Error("unsupported CBOR simple value " + info);
    }
    const n = arg(info);
    switch (major) {
      case 0: return n;
      case 1: return -1 - n;
      case 2: { const v = bytes.slice(pos, pos + n); pos += n; return v; }
      case 3: { const v = new TextDecoder().decode(bytes.slice(pos, pos + n)); pos += n; return v; }
      case 4: { const a = []; for (let i = 0; i < n; i++) a.push(item()); return a; }
      case 5: { const m = new Map(); for (let i = 0; i < n; i++) { const k = item(); m.set(k, item()); } return m; }
      case 6: return item(); // a tag (COSE_Sign1 may carry tag 18): its content
    }
    throw new Error("bad CBOR");
  }
  const value = item();
  if (pos !== bytes.length) throw new Error("trailing bytes after the CBOR item");
  return value;
}

function cborHead(major, n) {
  if (n < 24) return [(major << 5) | n];
  if (n < 0x100) return [(major << 5) | 24, n];
  if (n < 0x10000) return [(major << 5) | 25, n >> 8, n & 255];
  if (n < 0x100000000) return [(major << 5) | 26, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const hi = Math.floor(n / 0x100000000), lo = n >>> 0;
  return [(major << 5) | 27, (hi >>> 24) & 255, (hi >>> 16) & 255, (hi >>> 8) & 255, hi & 255,
          (lo >>> 24) & 255, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255];
}

function concat(...parts) {
  const total = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function envelope(ticketBytes, step, devsig) {
  return concat(Uint8Array.of(0x83), Uint8Array.from(cborHead(2, ticketBytes.length)), ticketBytes,
                Uint8Array.from(cborHead(0, step)), Uint8Array.from(cborHead(2, devsig.length)), devsig);
}

function u64be(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

// --- the ticket and the key ----------------------------------------------------------------------
function readTicket(bytes) {
  const sign1 = cborDecode(bytes);
  if (!Array.isArray(sign1) || sign1.length !== 4) throw new Error("not a COSE_Sign1 ticket");
  const claims = cborDecode(sign1[2]);
  const cti = claims.get(7), dev = claims.get(-5);
  if (!(cti instanceof Uint8Array) || cti.length !== 16) throw new Error("the ticket has no ticket id");
  if (!(dev instanceof Uint8Array)) throw new Error("a static ticket (no device key): show its GT1 code instead");
  return { bytes, cti, dev, aud: claims.get(3), seat: claims.get(-4), typ: claims.get(-1) || "general" };
}

function pemToDer(text) {
  const body = text.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

function fromBase64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

async function importDeviceKey(keyBytes) {
  const asText = new TextDecoder().decode(keyBytes);
  const der = asText.includes("-----BEGIN") ? pemToDer(asText) : keyBytes;
  return crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
}

async function checkKeyMatches(key, ticket) {
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const pub = fromBase64url(jwk.x);
  if (pub.length !== ticket.dev.length || pub.some((b, i) => b !== ticket.dev[i])) {
    throw new Error("this device key is not the one the ticket is bound to");
  }
}

async function codeAt(ticket, key, step) {
  const message = concat(new TextEncoder().encode("GT2"), ticket.cti, u64be(step));
  const devsig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, message));
  return "GT2:" + base45Encode(envelope(ticket.bytes, step, devsig));
}

// --- the page ------------------------------------------------------------------------------------
const state = { ticket: null, key: null, timer: null, fixedNow: null };

function nowSeconds() {
  return state.fixedNow !== null ? state.fixedNow : Date.now() / 1000;
}

function showError(message) {
  const el = document.getElementById("status");
  el.textContent = message;
  el.dataset.state = "error";
}

async function render() {
  const now = nowSeconds();
  const step = Math.floor(now / STEP_SECONDS);
  const text = await codeAt(state.ticket, state.key, step);
  const qr = qrcode(0, "M");
  qr.addData(text, "Alphanumeric");
  qr.make();
  document.getElementById("qr").innerHTML = qr.createSvgTag({ cellSize: 6, margin: 4, scalable: true });
  const code = document.getElementById("code");
  code.textContent = text;
  code.dataset.step = String(step);
  const t = state.ticket;
  document.getElementById("ticket").textContent =
    `${t.aud} · ${t.typ}${t.seat ? " · seat " + t.seat : ""} · ticket ${[...t.cti].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  const status = document.getElementById("status");
  status.dataset.state = "ready";
  status.textContent = "Show this code at the gate. It renews every 30 s; a screenshot stops working within a minute.";
  if (state.fixedNow === null) {
    clearTimeout(state.timer);
    state.timer = setTimeout(render, (STEP_SECONDS - (now % STEP_SECONDS)) * 1000 + 50);
  }
}

async function load(ticketBytes, keyBytes) {
  try {
    state.ticket = readTicket(ticketBytes);
    state.key = await importDeviceKey(keyBytes);
    await checkKeyMatches(state.key, state.ticket);
    await render();
  } catch (err) {
    showError(String(err && err.message ? err.message : err));
  }
}

async function fromPickers() {
  const t = document.getElementById("ticket-file").files[0];
  const k = document.getElementById("key-file").files[0];
  if (t && k) await load(new Uint8Array(await t.arrayBuffer()), new Uint8Array(await k.arrayBuffer()));
}

function start() {
  const params = new URLSearchParams(location.search);
  if (params.has("now")) state.fixedNow = Number(params.get("now"));
  if (!(crypto && crypto.subtle)) { showError("this browser has no WebCrypto"); return; }
  document.getElementById("ticket-file").addEventListener("change", fromPickers);
  document.getElementById("key-file").addEventListener("change", fromPickers);
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.has("ticket") && frag.has("key")) load(fromBase64url(frag.get("ticket")), fromBase64url(frag.get("key")));
}

document.addEventListener("DOMContentLoaded", start);
