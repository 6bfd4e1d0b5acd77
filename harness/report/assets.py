"""The leaderboard page's inline stylesheet and script (inline so the page is one self-contained file).

Sorting: click a column header (again to reverse), or open the page with `?sort=COLUMN&dir=desc`
(or the same after `#`): every sortable table with that column sorts on load and records the order
it applied in `data-sorted="COLUMN:dir"`. Only the method rows sort; reference rows stay below.
"""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.4rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e5e5e5; text-align: right; }
th[scope=row], thead th:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; cursor: pointer; user-select: none; white-space: nowrap; }
thead th[aria-sort=ascending]::after { content: " ▲"; } thead th[aria-sort=descending]::after { content: " ▼"; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
tbody.reference tr { color: #666; font-style: italic; } tbody.reference tr:first-child td,
tbody.reference tr:first-child th { border-top: 2px solid #999; }
.sig { color: #1a7f37; font-weight: 700; margin-left: 0.1rem; }
ul.notes { font-size: 0.8rem; color: #555; }
.matrix td.better { background: #d7f5dd; } .matrix td.worse { background: #fbdcdc; } .matrix td.self { background: #f3f3f3; }
.figure { margin: 1rem 0; } .figure img { max-width: 100%; border: 1px solid #eee; }
.meta { color: #555; font-size: 0.85rem; } code { font-size: 0.85em; }
table.provenance td { text-align: left; max-width: 28rem; overflow-wrap: break-word; hyphens: manual; }
.scroll { overflow-x: auto; max-width: 100%; } details { margin: 0.3rem 0 0.8rem; } summary { cursor: pointer; color: #555; }
ul.pairs { font-size: 0.9rem; margin: 0.3rem 0; }
"""

JS = r"""
(function () {
  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) return null;
    if (cell.dataset.value === undefined) return cell.textContent.trim().toLowerCase();
    return cell.dataset.value === "" ? null : parseFloat(cell.dataset.value);
  }
  function sortTable(table, column, dir) {
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = headers.findIndex(function (th) { return th.dataset.col === column; });
    if (index < 0) return false;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a, index), y = cellKey(b, index);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   // missing cells last, whichever the direction
      if (y === null) return -1;
      var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return dir === "desc" ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    headers[index].setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending");
    table.dataset.sorted = column + ":" + dir;
    return true;
  }
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.sortable"));
  tables.forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "descending" ? "asc" : "desc";
        sortTable(table, th.dataset.col, dir);
      });
    });
  });
  var query = window.location.search.slice(1) || window.location.hash.slice(1);
  var params = new URLSearchParams(query);
  var column = params.get("sort");
  if (column) {
    var dir = params.get("dir") === "asc" ? "asc" : "desc";
    tables.forEach(function (table) { sortTable(table, column, dir); });
  }
  window.ataxSortTable = sortTable;
})();
"""
