// The runs table: a click on a header sorts by that column, the filter box keeps the rows
// holding its text, and checked runs open side by side on the compare page.
(function () {
  "use strict";
  const table = document.getElementById("runs");
  const body = table.tBodies[0];
  const token = new URLSearchParams(location.search).get("token");
  for (const row of body.rows) {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = row.dataset.id;
    row.insertCell(0).appendChild(box);
  }
  table.tHead.rows[0].insertCell(0).textContent = "";
  const keyOf = (cell) => {
    const text = cell.textContent.trim().replace(/[,%]/g, "");
    const num = Number(text);
    return text !== "" && !Number.isNaN(num) ? num : cell.textContent;
  };
  Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
    if (col === 0) return;
    th.addEventListener("click", () => {
      const down = th.dataset.sort !== "asc";
      th.dataset.sort = down ? "asc" : "desc";
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = keyOf(a.cells[col]), y = keyOf(b.cells[col]);
        return (x < y ? -1 : x > y ? 1 : 0) * (down ? 1 : -1);
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
  document.getElementById("filter").addEventListener("input", (e) => {
    const text = e.target.value.toLowerCase();
    for (const row of body.rows) row.hidden = !row.textContent.toLowerCase().includes(text);
  });
  document.getElementById("compare").addEventListener("click", () => {
    const ids = Array.from(body.querySelectorAll("input:checked")).map((b) => b.value);
    if (ids.length < 2) return;
    const q = new URLSearchParams({ runs: ids.join(",") });
    if (token) q.set("token", token);
    location.href = `/compare?${q}`;
  });
})();
