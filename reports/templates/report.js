(function () {
  "use strict";

  // Sortable tables: click (or Enter on) a header; numeric columns sort on data-sort.
  function sortValue(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) { return numeric ? NaN : ""; }
    if (numeric) {
      var raw = cell.getAttribute("data-sort");
      return raw === null || raw === "" ? NaN : parseFloat(raw);
    }
    return cell.textContent.trim().toLowerCase();
  }

  function sortTable(table, th) {
    var index = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var headers = table.tHead.rows[0].cells;
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortValue(a, index, numeric), y = sortValue(b, index, numeric);
      if (numeric) {
        // Rows without a value stay at the bottom whichever way the column sorts.
        if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
        return ascending ? x - y : y - x;
      }
      var c = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? c : -c;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    body.appendChild(frag);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, th); }
      });
    });
  });

  // Filters: a text box and selects that match the rows' data-* attributes.
  Array.prototype.forEach.call(document.querySelectorAll("[data-filter-for]"), function (box) {
    var table = document.getElementById(box.getAttribute("data-filter-for"));
    if (!table) { return; }
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
    var text = box.querySelector("input[type=search]");
    var selects = Array.prototype.slice.call(box.querySelectorAll("select[data-attr]"));
    var count = box.querySelector(".count");
    function apply() {
      var needle = text ? text.value.trim().toLowerCase() : "";
      var shown = 0;
      rows.forEach(function (row, i) {
        var ok = !needle || texts[i].indexOf(needle) !== -1;
        for (var k = 0; ok && k < selects.length; k++) {
          var want = selects[k].value;
          if (want && row.getAttribute(selects[k].getAttribute("data-attr")) !== want) { ok = false; }
        }
        row.hidden = !ok;
        if (ok) { shown++; }
      });
      if (count) { count.textContent = "Showing " + shown + " of " + rows.length + " rows"; }
    }
    if (text) { text.addEventListener("input", apply); }
    selects.forEach(function (s) { s.addEventListener("change", apply); });
    apply();
  });

  // A link to a mutant opens its collapsed detail section.
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    if (el && el.tagName === "DETAILS") { el.open = true; el.scrollIntoView({block: "start"}); }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
