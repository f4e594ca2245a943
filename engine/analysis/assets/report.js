"use strict";
// The report's figures, drawn by the inlined Lightweight Charts from the embedded data:
// portfolio equity (feed gaps marked) and drawdown, the chosen symbol's candles with its fills
// and the strategy's plotted series (one value a candle), daily returns; and the fills table's symbol filter. Each figure is marked data-drawn.
(function () {
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var OPTIONS = { autoSize: true, layout: { attributionLogo: false }, timeScale: { timeVisible: true, minBarSpacing: 0.05 } };

  function points(s, scale) {
    var out = [];
    for (var i = 0; i < s.t.length; i++) {
      if (s.v[i] !== null) out.push({ time: s.t[i] / 1000, value: s.v[i] * (scale || 1) });
    }
    return out;
  }

  function chart(name) {
    var el = document.querySelector("[data-figure='" + name + "']");
    return { el: el, chart: LightweightCharts.createChart(el, OPTIONS) };
  }

  function done(fig) {
    fig.chart.timeScale().fitContent();
    fig.el.dataset.drawn = "true";
  }

  // the start of the last candle (or point) at or before stamp ms: markers sit on drawn times
  function snap(times, ms) {
    var t = ms / 1000, lo = 0, hi = times.length - 1;
    if (hi < 0 || t < times[0]) return null;
    while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (times[mid] <= t) lo = mid; else hi = mid - 1; }
    return times[lo];
  }

  function drawEquity() {
    var fig = chart("equity");
    var line = fig.chart.addSeries(LightweightCharts.LineSeries, { color: "#2563eb" });
    var data = points(D.equity);
    line.setData(data);
    var times = data.map(function (p) { return p.time; });
    var gaps = [];
    D.gaps.forEach(function (gap) {
      var at = snap(times, gap[0]);
      if (at !== null) gaps.push({ time: at, position: "aboveBar", shape: "square", color: "#f59e0b", text: "gap" });
    });
    LightweightCharts.createSeriesMarkers(line, gaps);
    done(fig);
  }

  function drawDrawdown() {
    var fig = chart("drawdown");
    fig.chart.addSeries(LightweightCharts.AreaSeries, {
      lineColor: "#dc2626", topColor: "rgba(220,38,38,0.05)", bottomColor: "rgba(220,38,38,0.35)",
      priceFormat: { type: "percent" },
    }).setData(points(D.drawdown, 100));
    done(fig);
  }

  function drawDaily() {
    var fig = chart("daily");
    fig.chart.addSeries(LightweightCharts.HistogramSeries, { priceFormat: { type: "percent" } })
      .setData(points(D.daily, 100).map(function (p) {
        return { time: p.time, value: p.value, color: p.value >= 0 ? "#16a34a" : "#dc2626" };
      }));
    done(fig);
  }

  function drawPrice() {
    var fig = chart("price");
    var candles = fig.chart.addSeries(LightweightCharts.CandlestickSeries, {});
    var markers = LightweightCharts.createSeriesMarkers(candles, []);
    var picker = document.getElementById("price-symbol");
    var COLORS = ["#f59e0b", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569"];
    var lines = {};
    function plot(symbol, times) {
      var series = D.plots[symbol] || {}, names = [];
      Object.keys(lines).concat(Object.keys(series)).forEach(function (name) {
        if (!lines[name]) {
          lines[name] = fig.chart.addSeries(LightweightCharts.LineSeries, {
            color: COLORS[Object.keys(lines).length % COLORS.length], lineWidth: 1, title: name,
            priceLineVisible: false, lastValueVisible: false });
        }
        var values = series[name] || [], data = [];
        for (var i = 0; i < values.length; i++) if (values[i] !== null) data.push({ time: times[i], value: values[i] });
        lines[name].setData(data);
        if (data.length && names.indexOf(name) < 0) names.push(name);
      });
      fig.el.dataset.plots = names.sort().join(",");
    }
    function show(symbol) {
      var b = D.price[symbol] || { t: [], o: [], h: [], l: [], c: [] };
      var f = D.fills[symbol] || { t: [], p: [], s: [] };
      var data = b.t.map(function (t, i) { return { time: t / 1000, open: b.o[i], high: b.h[i], low: b.l[i], close: b.c[i] }; });
      candles.setData(data);
      var times = data.map(function (d) { return d.time; }), shown = [];
      plot(symbol, times);
      for (var i = 0; i < f.t.length; i++) {
        var at = snap(times, f.t[i]);
        if (at === null) continue;
        shown.push({ time: at, position: "atPriceMiddle", price: f.p[i], size: 1,
                     shape: f.s[i] > 0 ? "arrowUp" : "arrowDown", color: f.s[i] > 0 ? "#16a34a" : "#dc2626" });
      }
      markers.setMarkers(shown);
      fig.el.dataset.symbol = symbol;
      fig.el.dataset.markers = String(shown.length);
      done(fig);
    }
    if (picker) picker.addEventListener("change", function () { show(picker.value); });
    show(picker && picker.value ? picker.value : (D.symbols[0] || ""));
  }

  function filterFills() {
    var picker = document.getElementById("fills-symbol");
    if (!picker) return;
    picker.addEventListener("change", function () {
      document.querySelectorAll("#fills tbody tr").forEach(function (row) {
        row.hidden = picker.value !== "" && row.dataset.symbol !== picker.value;
      });
    });
  }

  [drawEquity, drawDrawdown, drawPrice, drawDaily, filterFills].forEach(function (step) {
    try { step(); } catch (err) { window.papertapeError((err && err.stack) || String(err)); }
  });
})();
