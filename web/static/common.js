// Helpers of both pages: JSON calls and formatting.
"use strict";

// A JSON call. Every POST is JSON (the gateway refuses anything else, which
// keeps cross-site forms out). Resolves to {status, body, retryAfter}.
async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body || {});
  }
  try {
    const response = await fetch(path, options);
    let data = {};
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    return { status: response.status, body: data, retryAfter: response.headers.get("Retry-After") };
  } catch (e) {
    return { status: 0, body: { error: "network", message: String(e) }, retryAfter: "1" };
  }
}

// 128 random bits, top bit clear (it marks a repeat on the wire): one per
// purchase (or added goods), sent again with every retry of it, so that it
// is made at most once.
function newRequestId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[0] &= 0x7f;
  if (bytes.every((b) => b === 0)) bytes[15] = 1;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c);
  return node;
}

function money(cents) { return "$" + (cents / 100).toFixed(2); }

function clock(ms) { return new Date(ms).toLocaleTimeString(); }

function countdown(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return (h ? h + ":" + two(m) : m) + ":" + two(sec);
}

const ORDER_LABELS = { created: "awaiting payment", paid: "paid", cancelled: "cancelled" };

const STATE_LABELS = {
  upcoming: "upcoming", on_sale: "on sale", sold_out: "sold out", ended: "ended", paused: "paused",
};

function notice(text) {
  const n = document.getElementById("notice");
  n.textContent = text || "";
  n.hidden = !text;
}
