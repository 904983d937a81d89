// The admin console: add goods, sale controls, restock, reconcile, and a
// live chart of the BUY rate and the stock (polled once a second).
"use strict";

const enabled = document.body.dataset.enabled === "true";
const isAdmin = document.body.dataset.admin === "true";
const samples = []; // {t, buys, stock}
const WINDOW = 60;

function setUp() {
  document.getElementById("disabled").hidden = enabled;
  document.getElementById("login").hidden = !enabled || isAdmin;
  document.getElementById("console").hidden = !isAdmin;
  document.getElementById("admin-logout").hidden = !isAdmin;
  document.getElementById("admin-login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/admin/login", { token: document.getElementById("admin-token").value });
    if (r.status === 200) location.reload();
    else notice(r.status === 401 ? "Wrong token." : r.body.message || "Login failed.");
  });
  document.getElementById("admin-logout").addEventListener("click", async () => {
    await api("POST", "/api/admin/logout");
    location.reload();
  });
  document.getElementById("add-form").addEventListener("submit", addGoods);
  document.getElementById("reconcile").addEventListener("click", reconcile);
  if (isAdmin) {
    poll();
    setInterval(poll, 1000);
  }
}

function num(id) { return Number(document.getElementById(id).value); }

// The add whose last try had no definite answer (the connection failed,
// the servers were busy or did not answer in time): submitting the same
// form again retries it under its request id, so it adds one goods at most.
// Kept in the tab's session storage, so that a reload does not forget it.
const PENDING_ADD = "seckill.pendingAdd";
function pendingAdd() {
  try { return JSON.parse(sessionStorage.getItem(PENDING_ADD)); } catch (_) { return null; }
}
function setPendingAdd(pending) {
  try {
    if (pending) sessionStorage.setItem(PENDING_ADD, JSON.stringify(pending));
    else sessionStorage.removeItem(PENDING_ADD);
  } catch (_) { /* no storage: kept for this page only */ }
}

async function addGoods(e) {
  e.preventDefault();
  const fields = {
    name: document.getElementById("add-name").value.trim(),
    price_cents: Math.round(num("add-price") * 100),
    stock: num("add-stock"),
    start_in_s: num("add-start-in"),
    duration_s: num("add-duration") * 60,
    per_user_limit: num("add-limit"),
    pay_window_s: num("add-pay-window") * 60,
    token_required: document.getElementById("add-token-required").checked,
  };
  const key = JSON.stringify(fields);
  const pending = pendingAdd();
  const retry = pending !== null && pending.fields === key;
  const requestId = retry ? pending.requestId : newRequestId();
  setPendingAdd({ fields: key, requestId });
  const submit = document.getElementById("add-submit");
  submit.disabled = true;
  const r = await api("POST", "/api/admin/goods", { ...fields, request_id: requestId, retry });
  submit.disabled = false;
  const unknown = r.status === 0 || r.status === 502 || r.status === 503 || r.status === 504;
  if (!unknown) setPendingAdd(null);
  const out = document.getElementById("add-result");
  if (r.status === 200) {
    out.textContent = "Added goods " + r.body.goods.id + " (" + r.body.goods.name + "), " + r.body.goods.total + " units.";
  } else if (unknown) {
    out.textContent = "Not known whether it was added (" + (r.body.message || r.status) +
      "). Add again, unchanged, to retry: it is added once at most.";
  } else {
    out.textContent = "Not added: " + (r.body.message || r.status);
  }
  poll();
}

// Sale controls in flight ("id action"): their buttons stay off until the
// answer, through the table's redraw every second, so that a second click
// does not send one again (a restock twice is twice the units).
const controlling = new Set();

async function control(id, action, body) {
  const key = id + " " + action;
  if (controlling.has(key)) return;
  controlling.add(key);
  // Off at once, not at the redraw after the next poll's answer: until
  // then the button looked ready for a second click.
  for (const b of document.querySelectorAll(
    '#admin-goods tr[data-id="' + id + '"] button[data-action="' + action + '"]')) {
    b.disabled = true;
  }
  poll();
  const r = await api("POST", "/api/admin/goods/" + id + "/" + action, body);
  controlling.delete(key);
  notice(r.status === 200 ? "" : action + " failed: " + (r.body.message || r.status));
  busyShown = false;
  poll();
}

async function reconcile() {
  const r = await api("POST", "/api/admin/reconcile", {});
  if (r.status !== 200) { notice("Reconcile failed: " + (r.body.message || r.status)); return; }
  const table = document.getElementById("drifts");
  table.hidden = false;
  table.querySelector("tbody").replaceChildren(...r.body.drifts.map((d) => el("tr", { "data-id": d.goods_id },
    el("td", {}, d.goods_id),
    el("td", {}, d.found_remaining === null ? "missing" : String(d.found_remaining)),
    el("td", {}, String(d.remaining)),
    el("td", {}, String(d.found_holders)),
    el("td", {}, String(d.holders)),
    el("td", { class: "drift" }, (d.drift > 0 ? "+" : "") + d.drift))));
}

const BUSY = "The servers are busy — retrying…";
let busyShown = false;

async function poll() {
  const r = await api("GET", "/api/admin/stats");
  if (r.status === 401) { location.reload(); return; }
  // Only the poll's own message is the poll's to clear: a failed control's
  // (a restock that may have been applied, say) stays until the next one.
  if (r.status !== 200) { notice(BUSY); busyShown = true; return; }
  if (busyShown) { notice(""); busyShown = false; }
  const stock = r.body.goods.reduce((n, g) => n + g.remaining, 0);
  samples.push({ t: r.body.time_ms, buys: r.body.buys, stock });
  while (samples.length > WINDOW + 1) samples.shift();
  renderGoods(r.body.goods);
  renderChart();
}

// The goods table, redrawn every second in place: rows are made once per
// goods and only their figures change, so that a restock amount being typed
// keeps its value (and its focus, unless the list of goods changed).
function renderGoods(list) {
  const tbody = document.querySelector("#admin-goods tbody");
  const made = new Map(Array.from(tbody.rows, (row) => [row.dataset.id, row]));
  const rows = list.map((g) => made.get(String(g.id)) || goodsRow(g.id));
  const moved = rows.length !== tbody.rows.length || rows.some((row, i) => tbody.rows[i] !== row);
  if (moved) tbody.replaceChildren(...rows);
  list.forEach((g, i) => fillRow(rows[i], g));
}

function goodsRow(id) {
  const button = (action, label, body) => el("button", {
    class: action + " small", type: "button", "data-action": action,
    onclick: () => control(id, action, body ? body() : {}),
  }, label);
  const amount = el("input", { class: "restock-amount", type: "number", min: "1", value: "10", style: "width:70px" });
  return el("tr", { "data-id": id },
    el("td", {}, String(id)),
    el("td", { class: "name" }),
    el("td", {}, el("span", { class: "state" })),
    el("td", { class: "stock" }),
    el("td", { class: "window" }),
    el("td", {}, button("pause", "Pause"), " ", button("resume", "Resume"), " ", button("end", "End")),
    el("td", {}, amount, " ", button("restock", "Restock", () => ({ amount: Number(amount.value) }))));
}

function fillRow(row, g) {
  row.querySelector(".name").textContent = g.name;
  const state = row.querySelector(".state");
  state.className = "state " + g.state;
  state.textContent = STATE_LABELS[g.state] || g.state;
  row.querySelector(".stock").textContent = g.remaining + " / " + g.total;
  row.querySelector(".window").textContent = clock(g.start_ms) + " – " + clock(g.end_ms);
  for (const button of row.querySelectorAll("button[data-action]")) {
    button.disabled = controlling.has(g.id + " " + button.dataset.action);
  }
}

// Two lines on one inline SVG, each scaled to its own maximum.
function renderChart() {
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    rates.push(dt > 0 ? Math.max(0, samples[i].buys - samples[i - 1].buys) / dt : 0);
  }
  const stocks = samples.slice(1).map((s) => s.stock);
  const line = (values, cls) => {
    const max = Math.max(1, ...values);
    // Few samples still span the width; a full window scrolls left.
    const span = Math.max(values.length - 1, 10);
    const points = values.map((v, i) => (i * 600) / span + "," + (195 - (v / max) * 185)).join(" ");
    return '<polyline class="' + cls + '" fill="none" stroke-width="2" points="' + points + '"/>';
  };
  document.getElementById("chart").innerHTML = line(rates, "rate-line") + line(stocks, "stock-line");
  document.getElementById("rate-now").textContent = rates.length ? rates[rates.length - 1].toFixed(1) : "0";
  document.getElementById("stock-now").textContent = String(stocks[stocks.length - 1] || 0);
}

setUp();
