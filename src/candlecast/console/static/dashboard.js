// candlecast console: fetch /api/state every few seconds and redraw in place (no reload).
// Every value is written with textContent (never innerHTML): journal texts are not trusted.
"use strict";

const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
const TOKEN_KEY = "candlecast-control-token";
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, tokenInput.value));

const fmt = {
  text: (v) => (v === null || v === undefined || v === "" ? "—" : String(v)),
  num: (v, d = 4) => (v === null || v === undefined ? "—" : Number(v).toLocaleString("en-US", { maximumFractionDigits: d })),
  money: (v) => (v === null || v === undefined ? "—" : Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })),
  pct: (v) => (v === null || v === undefined ? "—" : (100 * Number(v)).toFixed(2).replace(/^-(0\.00)$/, "$1") + "%"),
  time: (v) => (v ? String(v).replace("T", " ").replace("+00:00", "Z").slice(0, 20) : "—"),
  bool: (v) => (v ? "yes" : "no"),
  list: (v) => (Array.isArray(v) && v.length ? v.join(", ") : "—"),
};
const NUMERIC = new Set(["num", "money", "pct"]);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// columns: [key, label, format, options] ; rows: array of objects
function table(id, rows, columns, empty = "nothing yet") {
  const node = document.getElementById(id);
  node.replaceChildren();
  const head = el("tr");
  columns.forEach(([, label]) => head.appendChild(el("th", label)));
  node.appendChild(el("thead")).appendChild(head);
  const body = node.appendChild(el("tbody"));
  if (!rows || !rows.length) {
    const tr = body.appendChild(el("tr"));
    const td = tr.appendChild(el("td", empty, "empty"));
    td.colSpan = columns.length;
    return;
  }
  rows.forEach((row) => {
    const tr = body.appendChild(el("tr"));
    columns.forEach(([key, , kind = "text", opt = {}]) => {
      const value = row[key];
      const classes = [];
      if (NUMERIC.has(kind)) classes.push("num");
      if (opt.wrap) classes.push("wrap");
      if (opt.signed && typeof value === "number") classes.push(value > 0 ? "pos" : value < 0 ? "neg" : "");
      const td = tr.appendChild(el("td", fmt[kind](value, opt.digits), classes.join(" ")));
      td.dataset.key = key;
    });
  });
}

function pairs(id, items) {  // a two-column key/value table
  table(id, items.map(([k, v]) => ({ k, v })), [["k", ""], ["v", ""]]);
}

function unavailable(id, part, columns) {
  table(id, [], columns, part && part.reason ? part.reason : "not available");
}

// ------------------------------------------------------------------ plots
function drawEquity(trader) {
  const curve = (trader && trader.curve) || { time: [], equity: [], drawdown: [] };
  const traces = [
    { x: curve.time, y: curve.equity, name: "equity", type: "scatter", mode: "lines",
      line: { color: "#1f6feb", width: 1.6, simplify: false }, xaxis: "x", yaxis: "y" },
    { x: curve.time, y: curve.drawdown.map((d) => (d === null ? null : 100 * d)), name: "drawdown %",
      type: "scatter", mode: "lines", fill: "tozeroy", line: { color: "#b3261e", width: 1 },
      xaxis: "x", yaxis: "y2" },
  ];
  const layout = {
    uirevision: "keep", margin: { l: 60, r: 20, t: 10, b: 30 }, showlegend: true,
    legend: { orientation: "h", y: 1.08 }, hovermode: "x unified",
    xaxis: { anchor: "y2", type: "date" },
    yaxis: { domain: [0.34, 1], title: { text: "equity" } },
    yaxis2: { domain: [0, 0.26], title: { text: "drawdown %" } },
  };
  Plotly.react("equity-plot", traces, layout, { displaylogo: false, responsive: true });
  const note = document.getElementById("equity-note");
  note.textContent = curve.points_total
    ? `${curve.points_total} candles` + (curve.thinned ? ` (plot thinned to ${curve.time.length} points)` : "")
    : (trader && trader.reason) || "no candles processed yet";
}

function drawComparison(cmp) {
  const note = document.getElementById("comparison-note");
  if (!cmp || !cmp.available) {
    Plotly.react("comparison-plot", [], { margin: { t: 10 }, annotations: [{ text: "not available", showarrow: false }] });
    note.textContent = (cmp && cmp.reason) || "";
    return;
  }
  const pct = (a) => a.map((v) => (v === null ? null : 100 * v));
  Plotly.react("comparison-plot", [
    { x: cmp.paper.time, y: pct(cmp.paper.return), name: "paper", mode: "lines", line: { color: "#1f6feb" } },
    { x: cmp.backtest.time, y: pct(cmp.backtest.return), name: `backtest (${cmp.strategy})`, mode: "lines",
      line: { color: "#b06000", dash: "dot" } },
  ], { uirevision: "keep", margin: { l: 60, r: 20, t: 10, b: 30 }, yaxis: { title: { text: "return %" } },
       legend: { orientation: "h", y: 1.12 }, hovermode: "x unified" }, { displaylogo: false, responsive: true });
  note.textContent = `${cmp.series.join(", ")}: paper ${fmt.pct(cmp.paper_return)} vs backtest ` +
    `${fmt.pct(cmp.backtest_return)} over ${fmt.time(cmp.period.start)} .. ${fmt.time(cmp.period.end)}; ` +
    `difference ${fmt.pct(cmp.difference)} at ${fmt.time(cmp.compared_at)}, largest gap ${fmt.pct(cmp.max_abs_gap)}` +
    (cmp.backtest_resolution ? `; backtest curve every ${cmp.backtest_resolution}` : "");
}

// ------------------------------------------------------------------ sections
function render(state) {
  const t = state.trader || {};
  const st = t.status || {};
  const badge = document.getElementById("badge");
  badge.textContent = st.state || "no state";
  badge.className = "badge " + String(st.state || "").replace(" ", "-");
  const s = t.summary || {};
  document.getElementById("headline").textContent = t.available
    ? `${t.mode} · ${t.exchange} ${t.symbols.join(", ")} ${t.timeframe} · equity ${fmt.money(s.equity)} ` +
      `(${fmt.pct(s.return)}) · drawdown ${fmt.pct(s.drawdown)} · last candle ${fmt.time(st.last_candle)}`
    : (t.reason || "");
  document.getElementById("updated").textContent = `updated ${fmt.time(state.generated_at)}`;

  drawEquity(t);
  table("positions-table", t.positions, [["symbol", "symbol"], ["side", "side"], ["qty", "qty", "num", { digits: 8 }],
    ["entry", "entry", "num", { digits: 2 }], ["stop", "stop", "num", { digits: 2 }], ["stop_reason", "stop type"],
    ["target", "take profit", "num", { digits: 2 }], ["last_close", "last close", "num", { digits: 2 }],
    ["unrealized_pnl", "unrealized PnL", "money", { signed: true }], ["unrealized_pct", "%", "pct", { signed: true }],
    ["target_position", "policy target", "num", { digits: 4, signed: true }], ["policy_reason", "policy reason"],
    ["order_style", "working order"]],
    t.reason || "no positions");
  const p = t.profit || {};
  pairs("profit-table", [["PnL since first candle", fmt.money(p.pnl)], ["return", fmt.pct(p.return)],
    ["realized (incl. fees, funding)", fmt.money(p.realized_pnl)], ["unrealized", fmt.money(p.unrealized_pnl)],
    ["fees paid", fmt.money(p.fees)], ["slippage", fmt.money(p.slippage)], ["fills", fmt.text(p.fills)],
    ["max drawdown", fmt.pct(p.max_drawdown)], ["candles", fmt.text(p.candles)]]);
  table("signals-table", t.signals, [["symbol", "series"], ["candle", "last candle", "time"], ["status", "status"],
    ["target_position", "target", "num", { digits: 4, signed: true }], ["policy_reason", "policy reason"],
    ["action", "action"], ["model_version", "model"],
    ["fresh_target_position", "last fresh target", "num", { digits: 4, signed: true }],
    ["fresh_policy_reason", "its policy reason"], ["fresh_model_version", "its model"],
    ["feature_timestamp", "its feature time", "time"]]);
  pairs("status-table", [["state", fmt.text(st.state)], ["paused (pause file)", fmt.bool(st.paused)],
    ["kill switch file", st.kill_switch_file ? `yes: ${st.kill_file_reason || ""}` : "no"],
    ["killed (trader)", st.killed ? `yes: ${st.kill_reason}` : "no"],
    ["drawdown halt", fmt.bool(st.drawdown_halted)], ["daily-loss halt", fmt.bool(st.daily_loss_halted)],
    ["candles without a fresh signal", fmt.text(st.signal_failures)],
    ["last state write", t.last_write_age_s === undefined ? "—" : `${Math.round(t.last_write_age_s)} s ago`]]);
  table("orders-table", t.orders, [["created", "decided at", "time"], ["symbol", "symbol"], ["side", "side"],
    ["intent", "intent"], ["reason", "reason"], ["status", "status"], ["style", "style"],
    ["limit_price", "limit", "num", { digits: 2 }], ["target", "target units", "num", { digits: 8 }],
    ["notional", "notional", "money"], ["filled", "filled", "num", { digits: 8 }], ["client_id", "client id"]],
    "no working orders");
  table("fills-table", (t.fills || []).slice().reverse(), [["time", "candle", "time"], ["symbol", "symbol"],
    ["side", "side"], ["qty", "qty", "num", { digits: 8 }], ["price", "price", "num", { digits: 2 }],
    ["fee", "fee", "money"], ["slippage", "slippage", "money"], ["reason", "reason"],
    ["pos_after", "position after", "num", { digits: 8 }]], "no fills yet");
  document.getElementById("decisions-note").textContent = t.decisions_total !== undefined
    ? `${t.decisions_total} decisions in total; counts by reason, then the newest ${(t.decisions || []).length}` : "";
  table("decision-counts-table", t.decision_counts, [["action", "action"], ["reason", "reason"], ["count", "count", "num"]],
    "no decisions yet");
  table("decisions-table", (t.decisions || []).slice().reverse(), [["time", "candle", "time"], ["symbol", "symbol"],
    ["action", "action"], ["reason", "reason"], ["side", "side"], ["qty", "qty", "num", { digits: 8 }],
    ["notes", "notes", "text", { wrap: true }], ["detail", "detail", "text", { wrap: true }]], "no decisions yet");
  table("events-table", (t.events || []).slice().reverse(), [["wall_time", "time", "time"], ["kind", "kind"],
    ["candle", "candle", "time"], ["message", "message", "text", { wrap: true }]], "no events");

  drawComparison(state.comparison);

  const r = state.registry || {};
  if (r.available) {
    const c = r.champion || {};
    pairs("champion-table", [["model", r.model], ["champion", c.version ? `v${c.version}` : "none"],
      ["since", fmt.time(c.since)], ["why", fmt.text(c.reason)], ["run", fmt.text(c.run_id)],
      ["challenger", r.challenger ? `v${r.challenger.version} (${fmt.text(r.challenger.decision)})` : "none"]]);
    table("history-table", r.history, [["when", "when", "time"], ["action", "move"], ["version", "to"],
      ["previous", "from"], ["by", "by"], ["reason", "reason", "text", { wrap: true }]], "no alias moves recorded");
    table("versions-table", r.versions, [["version", "version"], ["aliases", "aliases", "list"],
      ["created", "created", "time"], ["decision", "ops decision"], ["reason", "reason", "text", { wrap: true }]]);
    table("retrain-table", r.retrains, [["time", "decided", "time"], ["decision", "outcome"],
      ["challenger", "challenger"], ["champion", "vs champion"], ["p_value", "p-value", "num"],
      ["reason", "reason", "text", { wrap: true }]], "no retrain runs yet");
  } else {
    ["champion-table", "history-table", "versions-table"].forEach((id) => unavailable(id, r, [["x", ""]]));
    unavailable("retrain-table", r, [["x", ""]]);
  }
  const o = state.ops || {};
  table("drift-table", o.drift, [["stamp", "checked"], ["drifted", "drift?", "bool"], ["drift_share", "share", "pct"],
    ["prediction_score", "prediction", "num"], ["champion_version", "champion"],
    ["reasons", "reasons", "list", { wrap: true }]], "no drift check yet");

  const ctl = state.controls || {};
  document.getElementById("controls-note").textContent = ctl.enabled
    ? `controls need the token in ${ctl.token_env}; viewing is open on this machine only`
    : `controls are disabled: ${ctl.token_env} is not set where the dashboard runs`;
  table("audit-table", ctl.audit, [["time", "time", "time"], ["source", "from"], ["client", "client"],
    ["action", "action"], ["accepted", "done", "bool"], ["detail", "detail", "text", { wrap: true }]], "no control requests yet");
}

async function refresh() {
  try {
    const headers = tokenInput.value ? { Authorization: `Bearer ${tokenInput.value}` } : {};
    const response = await fetch("/api/state", { headers, cache: "no-store" });
    if (response.ok) {
      render(await response.json());
      document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
    } else {
      document.getElementById("updated").textContent = `refresh failed: HTTP ${response.status}`;
    }
  } catch (error) {
    document.getElementById("updated").textContent = `refresh failed: ${error}`;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

async function control(action) {
  const out = document.getElementById("control-result");
  const body = action === "kill" ? { reason: document.getElementById("kill-reason").value } : {};
  if (action === "kill" && !window.confirm(`Kill the trader (cancel orders, flatten, stop)? Reason: ${body.reason}`)) return;
  const headers = { "Content-Type": "application/json" };
  if (tokenInput.value) headers.Authorization = `Bearer ${tokenInput.value}`;
  sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
  try {
    const response = await fetch(`/api/control/${action}`, { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await response.json();
    out.textContent = answer.accepted ? answer.message : `refused: ${answer.message}`;
    out.className = "result " + (answer.accepted ? "ok" : "refused");
    out.dataset.status = String(response.status);
  } catch (error) {
    out.textContent = `failed: ${error}`;
    out.className = "result refused";
  }
}

document.getElementById("btn-pause").addEventListener("click", () => control("pause"));
document.getElementById("btn-resume").addEventListener("click", () => control("resume"));
document.getElementById("btn-kill").addEventListener("click", () => control("kill"));
refresh();
