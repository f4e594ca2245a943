"use strict";
(function () {
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var COLOR = {line: "#2563eb", band: "rgba(37,99,235,0.14)", up: "#16a34a", down: "#dc2626",
               under: "rgba(220,38,38,0.18)", grid: "#eef2f7", text: "#6b7280", gap: "rgba(245,158,11,0.22)"};
  var PAD = {l: 78, r: 14, t: 10, b: 24};
  var DAY = 86400000;

  function money(v) {
    if (Math.abs(v) < 1e-9) return "0";
    return v.toLocaleString("en-US", {maximumFractionDigits: Math.abs(v) < 10 ? 4 : 2});
  }
  function pct(v) { return Math.abs(v) < 1e-12 ? "0%" : (v * 100).toFixed(Math.abs(v) < 0.01 ? 3 : 2) + "%"; }

  function setup(el) {
    var w = el.clientWidth, h = el.clientHeight, r = window.devicePixelRatio || 1;
    el.width = Math.round(w * r); el.height = Math.round(h * r);
    var g = el.getContext("2d");
    g.setTransform(r, 0, 0, r, 0, 0);
    g.font = "11px system-ui, sans-serif";
    return {g: g, w: w, h: h};
  }

  function empty(c, message) {
    c.g.fillStyle = COLOR.text; c.g.textAlign = "center"; c.g.font = "14px system-ui, sans-serif";
    c.g.fillText(message, c.w / 2, c.h / 2);
  }

  function extent(arrays) {
    var lo = Infinity, hi = -Infinity;
    arrays.forEach(function (a) { for (var i = 0; i < a.length; i++) {
      if (a[i] === null) continue;
      if (a[i] < lo) lo = a[i];
      if (a[i] > hi) hi = a[i];
    } });
    return [lo, hi];
  }

  function niceTicks(lo, hi) {
    var raw = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; })
      .find(function (s) { return s >= raw; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }

  function timeLabel(t, span) {
    var s = new Date(t).toISOString();
    return span > 4 * DAY ? s.slice(0, 10) : s.slice(5, 16).replace("T", " ");
  }

  // Axes and grid for times [x0, x1] and values [y0, y1]; returns the scales. Time labels go
  // at six even steps, or at the given days (labelled at their middle).
  function frame(c, x0, x1, y0, y1, format, days) {
    if (y1 - y0 < 1e-12) { var d = Math.abs(y0) * 0.001 || 0.001; y0 -= d; y1 += d; }
    else { var p = (y1 - y0) * 0.05; y0 -= p; y1 += p; }
    var w = c.w - PAD.l - PAD.r, h = c.h - PAD.t - PAD.b, g = c.g;
    var X = function (t) { return PAD.l + (t - x0) / ((x1 - x0) || 1) * w; };
    var Y = function (v) { return PAD.t + (y1 - v) / (y1 - y0) * h; };
    g.lineWidth = 1; g.strokeStyle = COLOR.grid; g.fillStyle = COLOR.text;
    g.textAlign = "right"; g.textBaseline = "middle";
    niceTicks(y0, y1).forEach(function (v) {
      var y = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(PAD.l, y); g.lineTo(c.w - PAD.r, y); g.stroke();
      g.fillText(format(v), PAD.l - 6, y);
    });
    g.textBaseline = "top";
    if (days) {
      g.textAlign = "center";
      var every = Math.ceil(days.length / 8);
      for (var k = 0; k < days.length; k += every) {
        g.fillText(new Date(days[k]).toISOString().slice(0, 10), X(days[k] + DAY / 2), c.h - PAD.b + 6);
      }
    } else {
      for (var i = 0; i <= 5; i++) {
        var t = x0 + (x1 - x0) * i / 5;
        g.textAlign = i === 0 ? "left" : i === 5 ? "right" : "center";
        g.fillText(timeLabel(t, x1 - x0), X(t), c.h - PAD.b + 6);
      }
    }
    D.gaps.forEach(function (gap) {
      var a = Math.max(X(gap[0]), PAD.l), b = Math.min(X(gap[1]), c.w - PAD.r);
      if (b >= a) { g.fillStyle = COLOR.gap; g.fillRect(a, PAD.t, Math.max(b - a, 2), h); }
    });
    return {X: X, Y: Y};
  }

  function path(g, t, v, s) {
    g.beginPath();
    var pen = false;  // null values (NaN in the ledger) break the line
    for (var i = 0; i < t.length; i++) {
      if (v[i] === null) { pen = false; continue; }
      if (pen) g.lineTo(s.X(t[i]), s.Y(v[i])); else g.moveTo(s.X(t[i]), s.Y(v[i]));
      pen = true;
    }
  }

  // A line over time; ``underwater`` fills the area up to zero (the drawdown figure).
  function curve(c, series, format, underwater) {
    var t = series.t, e = extent([series.v, underwater ? [0] : []]), g = c.g;
    var s = frame(c, t[0], t[t.length - 1], e[0], e[1], format);
    if (underwater) {
      path(g, t, series.v, s);
      g.lineTo(s.X(t[t.length - 1]), s.Y(0)); g.lineTo(s.X(t[0]), s.Y(0));
      g.fillStyle = COLOR.under; g.fill();
    }
    path(g, t, series.v, s);
    g.strokeStyle = underwater ? COLOR.down : COLOR.line; g.lineWidth = 1.25; g.stroke();
  }

  function triangle(g, x, y, up) {
    var k = up ? 1 : -1;
    g.beginPath(); g.moveTo(x, y - 5 * k); g.lineTo(x - 4.5, y + 3 * k); g.lineTo(x + 4.5, y + 3 * k);
    g.closePath(); g.fill(); g.stroke();
  }

  var DRAW = {
    equity: function (c) {
      if (D.equity.t.length < 2) return empty(c, "No equity snapshots recorded");
      curve(c, D.equity, money);
    },
    drawdown: function (c) {
      if (D.drawdown.t.length < 2) return empty(c, "No equity snapshots recorded");
      curve(c, D.drawdown, pct, true);
    },
    price: function (c) {
      var p = D.price, f = D.fills, g = c.g;
      if (p.t.length === 0 && f.t.length === 0) return empty(c, "No bars or fills recorded");
      var times = p.t.concat(f.t), e = extent([p.lo, p.hi, f.p]), tx = extent([times]);
      var s = frame(c, tx[0], tx[1], e[0], e[1], money);
      if (p.t.length) {
        path(g, p.t, p.hi, s);
        for (var i = p.t.length - 1; i >= 0; i--) g.lineTo(s.X(p.t[i]), s.Y(p.lo[i]));
        g.closePath(); g.fillStyle = COLOR.band; g.fill();
        path(g, p.t, p.c, s); g.strokeStyle = COLOR.line; g.lineWidth = 1; g.stroke();
      }
      g.strokeStyle = "#fff"; g.lineWidth = 0.75;
      for (var j = 0; j < f.t.length; j++) {
        g.fillStyle = f.s[j] > 0 ? COLOR.up : COLOR.down;
        triangle(g, s.X(f.t[j]), s.Y(f.p[j]), f.s[j] > 0);
      }
      if (f.t.length === 0) {
        g.fillStyle = COLOR.text; g.textAlign = "right"; g.textBaseline = "top";
        g.fillText("no fills in this run", c.w - PAD.r - 4, PAD.t + 4);
      }
    },
    daily: function (c) {
      var d = D.daily;
      if (d.t.length === 0) return empty(c, "No complete day of equity recorded");
      var e = extent([d.v, [0]]);
      var s = frame(c, d.t[0], d.t[d.t.length - 1] + DAY, e[0], e[1], pct, d.t);
      for (var i = 0; i < d.t.length; i++) {
        var x0 = s.X(d.t[i]), x1 = s.X(d.t[i] + DAY), gap = Math.min((x1 - x0) * 0.15, 4);
        var y0 = s.Y(0), y1 = s.Y(d.v[i] || 0);
        c.g.fillStyle = d.v[i] >= 0 ? COLOR.up : COLOR.down;
        c.g.fillRect(x0 + gap, Math.min(y0, y1), Math.max(x1 - x0 - 2 * gap, 1),
                     Math.max(Math.abs(y1 - y0), 1));
      }
    }
  };

  function drawAll() {
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      try {
        DRAW[el.dataset.figure](setup(el));
        el.dataset.drawn = "true";
      } catch (error) {
        window.papertapeError("figure " + el.dataset.figure + ": " + ((error && error.stack) || error));
      }
    });
  }

  var timer;
  window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(drawAll, 150); });
  drawAll();
})();
