// The storefront: goods with a countdown and live stock (polled once a
// second), a buy button that shows the outcome, and my orders.
"use strict";

const me = { id: document.body.dataset.userId, name: document.body.dataset.name };
const loginMode = document.body.dataset.login;
let offset = 0;              // gateway clock minus ours
let goods = [];              // last list
const outcomes = {};         // goods id -> {text, kind}
const pendingIds = {};       // goods id -> request id of a purchase in doubt
const buying = {};           // goods id -> a BUY in flight

function serverNow() { return Date.now() + offset; }

function effectiveState(g) {
  if (g.state === "upcoming" && serverNow() >= g.start_ms) return "starting";
  return g.state;
}

function renderGoods() {
  const box = document.getElementById("goods");
  if (!goods.length) {
    box.replaceChildren(el("p", { class: "muted" }, "Nothing on sale yet."));
    return;
  }
  box.replaceChildren(...goods.map((g) => {
    const state = effectiveState(g);
    let label = STATE_LABELS[g.state] || g.state;
    if (g.state === "upcoming") {
      label = state === "starting" ? "starting…" : "starts in " + countdown(g.start_ms - serverNow());
    }
    const canBuy = !!me.id && (state === "on_sale" || state === "starting") && !buying[g.id];
    const outcome = outcomes[g.id] || { text: me.id ? "" : "Log in to buy.", kind: "" };
    const pct = g.total ? Math.round((100 * g.remaining) / g.total) : 0;
    return el("div", { class: "goods", "data-id": g.id },
      el("div", { class: "name" }, g.name),
      el("div", { class: "price" }, money(g.price_cents)),
      el("span", { class: "state " + (state === "starting" ? "upcoming" : g.state) }, label),
      el("div", { class: "remaining" }, g.remaining + " of " + g.total + " left"),
      el("div", { class: "bar" }, el("span", { style: "width:" + pct + "%" })),
      el("button", { class: "buy", type: "button", disabled: !canBuy, onclick: () => buy(g) },
        pendingIds[g.id] ? "Try again" : "Buy now"),
      el("div", { class: "outcome " + outcome.kind }, outcome.text));
  }));
}

async function refreshGoods() {
  const r = await api("GET", "/api/goods");
  if (r.status === 200) {
    offset = r.body.server_time_ms - Date.now();
    goods = r.body.goods;
    notice("");
  } else {
    notice("The sale is busy — retrying…");
  }
  renderGoods();
}

async function buy(g) {
  buying[g.id] = true;
  renderGoods();
  // A purchase whose last try had no definite answer is tried again under
  // its id, marked as a retry (the server then answers what the first try
  // did, never from a cache).
  const retry = pendingIds[g.id] !== undefined;
  const requestId = pendingIds[g.id] || newRequestId();
  pendingIds[g.id] = requestId;
  const body = { request_id: requestId, retry: retry };
  if (g.token_required) {
    const t = await api("POST", "/api/goods/" + g.id + "/token");
    if (t.status !== 200) {
      show(g.id, failure(t), "retry");
      buying[g.id] = false;
      renderGoods();
      return;
    }
    body.purchase_token = t.body.purchase_token;
  }
  const r = await api("POST", "/api/goods/" + g.id + "/buy", body);
  buying[g.id] = false;
  const o = r.body.outcome;
  if (o) delete pendingIds[g.id]; // a definite answer: the next click is a new purchase
  if (o === "ordered") show(g.id, "Ordered! Order " + r.body.order_no + " — pay it below.", "good");
  else if (o === "already_bought") show(g.id, "Already bought: order " + r.body.order_no + ".", "good");
  else if (o === "sold_out") show(g.id, "Sold out.", "bad");
  else if (o === "not_started") show(g.id, "Not started yet.", "retry");
  else if (o === "paused") show(g.id, "Paused — the sale may resume.", "retry");
  else if (o === "ended") show(g.id, "The sale has ended.", "bad");
  else show(g.id, failure(r), "retry");
  refreshGoods();
  refreshOrders();
}

function failure(r) {
  if (r.status === 503) return "Busy — try again.";
  if (r.status === 429) return "Too many tries — wait " + (r.retryAfter || 1) + " s and try again.";
  if (r.status === 401) return "Log in first.";
  return (r.body && r.body.message) || "Something went wrong (" + r.status + ").";
}

function show(id, text, kind) { outcomes[id] = { text, kind }; renderGoods(); }

async function refreshOrders() {
  if (!me.id) return;
  const r = await api("GET", "/api/orders");
  if (r.status !== 200) return;
  document.getElementById("orders-section").hidden = false;
  const names = Object.fromEntries(goods.map((g) => [g.id, g.name]));
  const rows = r.body.orders.map((o) => el("tr", { class: "order", "data-no": o.order_no },
    el("td", {}, o.order_no),
    el("td", {}, names[o.goods_id] || "#" + o.goods_id),
    el("td", { class: "order-state" }, ORDER_LABELS[o.state] || o.state),
    el("td", { class: "pay-by" }, o.state === "created" ? clock(o.pay_by_ms) : ""),
    el("td", {},
      o.state === "created" ? el("button", { class: "pay small", type: "button", onclick: () => settle(o, "pay") }, "Pay") : "",
      " ",
      o.state === "created" ? el("button", { class: "cancel small", type: "button", onclick: () => settle(o, "cancel") }, "Cancel") : "")));
  document.querySelector("#orders tbody").replaceChildren(...rows);
  document.getElementById("no-orders").hidden = rows.length > 0;
}

async function settle(order, action) {
  const r = await api("POST", "/api/orders/" + order.order_no + "/" + action);
  if (r.status === 200) notice("");
  else if (r.body.outcome === "order_cancelled") notice("Too late: that order was cancelled.");
  else if (r.body.outcome === "order_paid") notice("That order is already paid.");
  else notice(failure(r));
  refreshOrders();
  refreshGoods();
}

function setUpAccount() {
  const form = document.getElementById("login-form");
  document.getElementById("signed-in").hidden = !me.id;
  form.hidden = !!me.id || loginMode !== "demo";
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = document.getElementById("login-name").value.trim();
    const r = await api("POST", "/api/login", { name });
    if (r.status === 200) location.reload();
    else notice(r.body.message || "Login failed.");
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await api("POST", "/api/logout");
    location.reload();
  });
}

setUpAccount();
refreshGoods();
refreshOrders();
setInterval(refreshGoods, 1000);
setInterval(refreshOrders, 5000);
// The countdown moves between polls; a sale that just started is fetched at once.
setInterval(() => {
  if (goods.some((g) => g.state === "upcoming")) {
    if (goods.some((g) => effectiveState(g) === "starting")) refreshGoods();
    else renderGoods();
  }
}, 250);
