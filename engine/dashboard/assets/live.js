// The live run's page follows the session over the /api/live websocket: each bar is drawn on
// the price chart as it closes, fills and order updates are listed, the feed state, reconnects,
// equity, positions and open orders are kept current. No reload; a dropped stream reconnects.
(function () {
  const panel = document.getElementById("live");
  const events = document.getElementById("live-events");
  const text = (id, value) => { document.getElementById(id).textContent = value; };
  const count = (key) => { panel.dataset[key] = String(Number(panel.dataset[key]) + 1); };

  function note(line) {
    const item = document.createElement("li");
    item.textContent = line;
    events.prepend(item);
    while (events.children.length > 50) events.lastChild.remove();
  }

  function status(m) {
    text("live-feed", m.feed);
    text("live-reconnects", String(m.reconnects));
    text("live-equity", Number(m.equity).toFixed(2));
    text("live-bars", String(m.bars));
    text("live-positions", Object.entries(m.positions).map(([s, q]) => `${s} ${q}`).join(", ") || "-");
    text("live-orders", m.open_orders.map((o) => `${o.order} ${o.symbol} ${o.side > 0 ? "buy" : "sell"} `
      + `${o.qty} ${o.type}${o.price == null ? "" : " @ " + o.price}`).join("; ") || "none");
  }

  function bar(m) {
    count("bars");
    const run = window.papertapeRun;
    if (!run || run.picker.value !== m.symbol) return;
    const candle = { time: m.time / 1000, open: m.open, high: m.high, low: m.low, close: m.close };
    const data = run.candles.data();
    if (data.length && data[data.length - 1].time > candle.time) return;  // already drawn finer
    run.candles.update(candle);
    panel.dataset.lastBar = String(m.time);
  }

  const handlers = {
    hello: status,
    status,
    bar,
    fill(m) { count("fills"); note(`fill ${m.symbol} ${m.side > 0 ? "buy" : "sell"} ${m.qty} @ ${m.price} (fee ${m.fee})`); },
    order(m) { note(`order ${m.order} ${m.symbol} ${m.status}${m.reason ? ": " + m.reason : ""}`); },
    feed(m) { note(`feed ${m.symbol} ${m.status}${m.detail ? ": " + m.detail : ""}`); text("live-feed", m.status); },
  };

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
    ws.onmessage = (e) => { const m = JSON.parse(e.data); (handlers[m.type] || (() => {}))(m); };
    ws.onclose = () => { text("live-feed", "dashboard stream closed, reconnecting"); setTimeout(connect, 1000); };
  }
  connect();
})();
