// The live run's page in place: websocket /api/live sends a hello (positions, open orders,
// feed state) and then each event as the session handles it; bars and trades update the price
// chart, fills add markers, plot points extend the strategy's lines, equity extends its curve, the live panel shows positions, open
// orders, feed status and reconnects. A closed socket is opened again every 2 s.
(function () {
  "use strict";
  const root = document.getElementById("chart");
  if (root.dataset.live !== "true") return;
  const panel = document.getElementById("live");
  const token = new URLSearchParams(location.search).get("token");
  const run = () => window.papertapeRun;
  const stats = { messages: 0, bars: 0, latencies: [], connects: 0 };
  window.papertapeLive = stats;
  let intervalMs = 60000;
  const positions = {};

  const text = (id, value) => { document.getElementById(id).textContent = String(value); };

  function parseInterval(s) {
    const units = { s: 1000, m: 60000, h: 3600000, d: 86400000 };
    const m = /^(\d+)([smhd])$/.exec(s || "");
    return m ? Number(m[1]) * units[m[2]] : 60000;
  }

  function table(id, columns, rows) {
    const el = document.getElementById(id);
    el.replaceChildren();
    const head = el.insertRow();
    for (const c of columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
    for (const r of rows) {
      const tr = el.insertRow();
      for (const c of columns) tr.insertCell().textContent = r[c] === null || r[c] === undefined ? "" : String(r[c]);
    }
  }

  function showPositions() {
    table("live-positions", ["symbol", "qty", "avg_price", "realized_pnl"],
      Object.entries(positions).map(([symbol, p]) => ({ symbol, ...p })));
  }

  function showOrders(orders) {
    table("live-orders", ["client_order_id", "symbol", "side", "type", "qty", "filled", "price", "status"],
      orders.map((o) => ({ ...o, side: o.side > 0 ? "buy" : "sell" })));
  }

  // a trade batch moves the forming bar (the one its last trade falls in)
  function onTrade(m) {
    const r = run();
    if (!r || m.symbol !== r.symbol()) return;
    const t = Math.floor(m.t / intervalMs) * intervalMs;
    const last = r.lastBar();
    if (last && last.time * 1000 === t) {
      r.liveBar({ symbol: m.symbol, t, o: last.open, h: Math.max(last.high, m.high), l: Math.min(last.low, m.low), c: m.price });
    } else if (!last || last.time * 1000 < t) {
      r.liveBar({ symbol: m.symbol, t, o: m.price, h: m.high, l: m.low, c: m.price });
    }
  }

  function onEquity(m) {
    text("live-equity", m.value.toFixed(2));
    text("live-bars", m.bars);
    showOrders(m.open_orders);
    const line = window.papertapeEquity;
    if (!line) return;
    const data = line.data(), time = m.t / 1000;
    if (!data.length || data[data.length - 1].time <= time) line.update({ time, value: m.value });
  }

  const handlers = {
    hello(m) {
      intervalMs = parseInterval(m.interval);
      panel.hidden = false;
      text("live-feed", m.state); text("live-reconnects", m.reconnects);
      text("live-equity", m.equity.toFixed(2)); text("live-bars", m.bars);
      for (const [s, p] of Object.entries(m.positions || {})) positions[s] = p;
      showPositions(); showOrders(m.open_orders || []);
    },
    bar(m) {
      const r = run();
      if (r && r.liveBar(m)) {
        stats.bars += 1;
        stats.latencies.push(Date.now() - m.close_ms);
        root.dataset.liveBars = String(stats.bars);
      }
    },
    trade: onTrade,
    equity: onEquity,
    fill(m) { const r = run(); if (r) r.liveFill(m); },
    plot(m) { const r = run(); if (r) r.livePlot(m); },
    order(m) { showOrders(m.open_orders); },
    position(m) {
      positions[m.symbol] = { qty: m.qty, avg_price: m.avg_price, realized_pnl: m.realized_pnl };
      showPositions();
    },
    feed(m) {
      text("live-feed", `${m.state} (${m.symbol} ${m.status}${m.detail ? ": " + m.detail : ""})`);
      text("live-reconnects", m.reconnects);
      panel.dataset.feed = m.status;
    },
  };

  function connect() {
    const q = token ? `?token=${encodeURIComponent(token)}` : "";
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live${q}`);
    ws.onopen = () => { stats.connects += 1; text("live-socket", "connected"); };
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      stats.messages += 1;
      text("live-updated", new Date().toISOString().slice(11, 23));
      const handle = handlers[m.type];
      if (handle) handle(m);
    };
    ws.onclose = () => { text("live-socket", "closed, connecting again"); setTimeout(connect, 2000); };
  }

  const begin = () => connect();
  if (root.dataset.drawn === "true") begin();
  else document.addEventListener("papertape:price-drawn", begin, { once: true });
})();
