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

async function addGoods(e) {
  e.preventDefault();
  const body = {
    name: document.getElementById("add-name").value.trim(),
    price_cents: Math.round(num("add-price") * 100),
    stock: num("add-stock"),
    start_in_s: num("add-start-in"),
    duration_s: num("add-duration") * 60,
    per_user_limit: num("add-limit"),
    pay_window_s: num("add-pay-window") * 60,
    token_required: document.getElementById("add-token-required").checked,
  };
  const r = await api("POST", "/api/admin/goods", body);
  const out = document.getElementById("add-result");
  out.textContent = r.status === 200
    ? "Added goods " + r.body.goods.id + " (" + r.body.goods.name + "), " + r.body.goods.total + " units."
    : "Not added: " + (r.body.message || r.status);
  poll();
}

async function control(id, action, body) {
  const path = "/api/admin/goods/" + id + "/" + action;
  const r = await api("POST", path, body);
  notice(r.status === 200 ? "" : action + " failed: " + (r.body.message || r.status));
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

async function poll() {
  const r = await api("GET", "/api/admin/stats");
  if (r.status === 401) { location.reload(); return; }
  if (r.status !== 200) { notice("The servers are busy — retrying…"); return; }
  notice("");
  const stock = r.body.goods.reduce((n, g) => n + g.remaining, 0);
  samples.push({ t: r.body.time_ms, buys: r.body.buys, stock });
  while (samples.length > WINDOW + 1) samples.shift();
  renderGoods(r.body.goods);
  renderChart();
}

function renderGoods(list) {
  const rows = list.map((g) => el("tr", { "data-id": g.id },
    el("td", {}, g.id),
    el("td", {}, g.name),
    el("td", {}, el("span", { class: "state " + g.state }, STATE_LABELS[g.state] || g.state)),
    el("td", { class: "stock" }, g.remaining + " / " + g.total),
    el("td", {}, clock(g.start_ms) + " – " + clock(g.end_ms)),
    el("td", {},
      el("button", { class: "pause small", type: "button", onclick: () => control(g.id, "pause") }, "Pause"), " ",
      el("button", { class: "resume small", type: "button", onclick: () => control(g.id, "resume") }, "Resume"), " ",
      el("button", { class: "end small", type: "button", onclick: () => control(g.id, "end") }, "End")),
    el("td", {},
      el("input", { class: "restock-amount", type: "number", min: "1", value: "10", style: "width:70px" }), " ",
      el("button", { class: "restock small", type: "button", onclick: (e) => {
        const amount = Number(e.target.parentNode.querySelector(".restock-amount").value);
        control(g.id, "restock", { amount });
      } }, "Restock"))));
  document.querySelector("#admin-goods tbody").replaceChildren(...rows);
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
