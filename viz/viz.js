/* surgery front end: node panel, search, zoom, collapsible namespaces; report table and sections.
   Written for this project; no external libraries. Pictures are Graphviz SVG placed inline. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("surgery-data").textContent);
  var panel = document.getElementById("panel");
  var pinned = null;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); }); }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function kvTable(rows) {
    var t = el("table", { "class": "kv" });
    rows.forEach(function (r) {
      var tr = el("tr");
      r.forEach(function (cell) { var td = el("td"); td.appendChild(el("code", null, cell)); tr.appendChild(td); });
      t.appendChild(tr);
    });
    return t;
  }

  function viewOf(svgNode) {
    var pic = svgNode.closest(".pic");
    return pic ? DATA.views[pic.getAttribute("data-view")] : null;
  }

  /* ---------------------------------------------------------------- node panel */
  function showNode(info, pin) {
    if (!panel || !info) { return; }
    panel.hidden = false;
    panel.innerHTML = "";
    panel.appendChild(el("div", { "class": "pin" }, pin ? "pinned (click empty space to release)" : "hover; click a node to pin"));
    panel.appendChild(el("h3", null, info.name));
    var head = [["op", info.op], ["category", info.cat]];
    if (info.state) { head.push(["change", info.state]); }
    if (info.device) { head.push(["device", info.device]); }
    if (info.cut) { head.push(["edges not shown", String(info.cut)]); }
    panel.appendChild(kvTable(head));
    if (info.fields && info.fields.length) {
      panel.appendChild(el("b", null, "plugin fields"));
      panel.appendChild(kvTable(info.fields.map(function (f) { return [f[0] + (f[1] ? " : " + f[1] : ""), f[2]]; })));
    }
    if (info.inputs && info.inputs.length) {
      panel.appendChild(el("b", null, "inputs (slot: tensor)"));
      panel.appendChild(kvTable(info.inputs.map(function (t, i) { return [String(i), t]; })));
    }
    if (info.controls && info.controls.length) {
      panel.appendChild(el("b", null, "control inputs"));
      panel.appendChild(kvTable(info.controls.map(function (c) { return ["^", c]; })));
    }
    var keys = Object.keys(info.attrs || {});
    if (keys.length && !(info.fields && info.fields.length)) {
      panel.appendChild(el("b", null, "attributes"));
      panel.appendChild(kvTable(keys.map(function (k) { return [k, info.attrs[k]]; })));
    }
  }

  function wireNodes(svg) {
    var view = viewOf(svg);
    if (!view) { return; }
    // Graphviz tooltips would double the panel: keep them only in standalone SVG files.
    svg.querySelectorAll("title").forEach(function (t) { t.remove(); });
    svg.querySelectorAll("a").forEach(function (a) { a.removeAttribute("xlink:title"); a.removeAttribute("title"); });
    svg.querySelectorAll("g.node").forEach(function (g) {
      var info = view.nodes[g.id];
      if (!info) { return; }
      g.setAttribute("data-name", info.name);
      g.addEventListener("mouseenter", function () { if (!pinned) { showNode(info, false); } });
      g.addEventListener("click", function (ev) {
        ev.stopPropagation();
        if (pinned) { pinned.classList.remove("sel"); }
        pinned = g;
        g.classList.add("sel");
        showNode(info, true);
      });
    });
    svg.addEventListener("click", function () {
      if (pinned) { pinned.classList.remove("sel"); pinned = null; }
    });
  }

  /* ---------------------------------------------------------------- namespaces */
  function applyCollapse(svg) {
    var view = viewOf(svg);
    if (!view) { return; }
    var closed = {};
    svg.querySelectorAll("g.cluster.collapsed").forEach(function (c) { closed[c.id] = true; });
    var hidden = {};
    Object.keys(view.nodes).forEach(function (id) {
      var chain = view.nodes[id].cl || [];
      var hide = chain.some(function (c) { return closed[c]; });
      var g = svg.querySelector("#" + CSS.escape(id));
      if (g) { g.classList.toggle("gone", hide); }
      if (hide) { hidden[id] = chain.filter(function (c) { return closed[c]; })[0]; }
    });
    Object.keys(view.clusters).forEach(function (cid) {
      var inner = view.clusters[cid].parents || [];
      var g = svg.querySelector("#" + CSS.escape(cid));
      if (g) { g.classList.toggle("gone", inner.some(function (p) { return closed[p]; })); }
    });
    Object.keys(view.edges || {}).forEach(function (eid) {
      var ends = view.edges[eid];
      var g = svg.querySelector("#" + CSS.escape(eid));
      if (!g) { return; }
      var a = hidden[ends[0]], b = hidden[ends[1]];
      g.classList.toggle("gone", Boolean(a && b && a === b));
    });
  }

  function wireClusters(svg) {
    var view = viewOf(svg);
    if (!view) { return; }
    svg.querySelectorAll("g.cluster").forEach(function (g) {
      var info = view.clusters[g.id];
      if (!info) { return; }
      var label = g.querySelector("text");
      g.setAttribute("data-ns", info.name);
      g.addEventListener("click", function (ev) {
        ev.stopPropagation();
        g.classList.toggle("collapsed");
        if (label) {
          var base = info.name.split("/").pop();
          label.textContent = g.classList.contains("collapsed") ? "\u25B8 " + base + " (" + info.count + " nodes)" : base;
        }
        applyCollapse(svg);
      });
    });
  }

  function setAllClusters(collapse) {
    document.querySelectorAll(".pic svg").forEach(function (svg) {
      var view = viewOf(svg);
      if (!view) { return; }
      svg.querySelectorAll("g.cluster").forEach(function (g) {
        var info = view.clusters[g.id];
        if (!info) { return; }
        var top = !(info.parents && info.parents.length);
        var want = collapse && top;
        if (g.classList.contains("collapsed") !== want) {
          g.classList.toggle("collapsed", want);
          var label = g.querySelector("text");
          var base = info.name.split("/").pop();
          if (label) { label.textContent = want ? "\u25B8 " + base + " (" + info.count + " nodes)" : base; }
        }
      });
      applyCollapse(svg);
    });
  }

  /* ---------------------------------------------------------------- zoom */
  function wireZoom(pic) {
    var svg = pic.querySelector("svg");
    if (!svg) { return; }
    var w = parseFloat(svg.getAttribute("width")), h = parseFloat(svg.getAttribute("height"));
    var scale = 1;
    function apply() {
      svg.setAttribute("width", (w * scale).toFixed(1) + "pt");
      svg.setAttribute("height", (h * scale).toFixed(1) + "pt");
    }
    pic.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        var how = b.getAttribute("data-zoom");
        if (how === "in") { scale *= 1.25; }
        else if (how === "out") { scale /= 1.25; }
        else {
          var box = pic.querySelector(".canvas");
          scale = Math.min(1.5, (box.clientWidth - 4) / (w * 4 / 3));
        }
        apply();
      });
    });
  }

  /* ---------------------------------------------------------------- search */
  function search(query) {
    var q = query.trim().toLowerCase();
    var hits = [];
    document.querySelectorAll("svg g.node.hit").forEach(function (g) { g.classList.remove("hit"); });
    var sections = {};
    if (q) {
      document.querySelectorAll(".pic svg").forEach(function (svg) {
        var view = viewOf(svg);
        if (!view) { return; }
        svg.querySelectorAll("g.node").forEach(function (g) {
          var info = view.nodes[g.id];
          if (!info) { return; }
          if (info.name.toLowerCase().indexOf(q) >= 0 || String(info.op).toLowerCase().indexOf(q) >= 0) {
            g.classList.add("hit");
            hits.push(g);
            var sec = g.closest("details.app");
            if (sec) { sections[sec.id] = sec; }
          }
        });
      });
    }
    Object.keys(sections).forEach(function (id) { sections[id].open = true; });
    var rows = filterTable(q);
    var out = document.getElementById("search-result");
    if (out) {
      var text = q ? hits.length + " node" + (hits.length === 1 ? "" : "s") + " found" : "";
      if (q && Object.keys(sections).length) { text += " in " + Object.keys(sections).length + " section(s)"; }
      if (q && rows !== null) { text += ", " + rows + " change row(s)"; }
      out.textContent = text;
    }
    if (hits.length) {
      hits[0].scrollIntoView({ block: "center", inline: "center" });
      var info = viewOf(hits[0]).nodes[hits[0].id];
      showNode(info, false);
    }
    return hits.length;
  }

  /* ---------------------------------------------------------------- report table */
  function filterTable(q) {
    var table = document.getElementById("changes");
    if (!table) { return null; }
    var shown = 0;
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      var match = !q || tr.textContent.toLowerCase().indexOf(q) >= 0;
      tr.classList.toggle("filtered", !match);
      if (match) { shown += 1; }
    });
    var count = document.getElementById("table-count");
    if (count) { count.textContent = shown + " of " + table.tBodies[0].rows.length + " changes shown"; }
    return shown;
  }

  function wireTable() {
    var table = document.getElementById("changes");
    if (!table) { return; }
    var filter = document.getElementById("table-filter");
    if (filter) { filter.addEventListener("input", function () { filterTable(filter.value.trim().toLowerCase()); }); }
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("asc");
        table.querySelectorAll("th").forEach(function (o) { o.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-sort") || a.cells[col].textContent;
          var y = b.cells[col].getAttribute("data-sort") || b.cells[col].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
    table.querySelectorAll("a[data-app]").forEach(function (a) {
      a.addEventListener("click", function () {
        var sec = document.getElementById(a.getAttribute("data-app"));
        if (sec) { sec.open = true; }
      });
    });
  }

  /* ---------------------------------------------------------------- start */
  document.querySelectorAll(".pic svg").forEach(function (svg) { wireNodes(svg); wireClusters(svg); });
  document.querySelectorAll(".pic").forEach(wireZoom);
  wireTable();
  var box = document.getElementById("search");
  if (box) {
    var timer = null;
    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { search(box.value); }, 150);
    });
    box.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { clearTimeout(timer); search(box.value); } });
  }
  document.querySelectorAll("[data-action]").forEach(function (b) {
    b.addEventListener("click", function () {
      var what = b.getAttribute("data-action");
      if (what === "collapse-all") { setAllClusters(true); }
      else if (what === "expand-all") { setAllClusters(false); }
      else if (what === "open-sections") { document.querySelectorAll("details.app").forEach(function (d) { d.open = true; }); }
      else if (what === "close-sections") { document.querySelectorAll("details.app").forEach(function (d) { d.open = false; }); }
    });
  });
  window.surgery = { search: search, collapseAll: function () { setAllClusters(true); }, expandAll: function () { setAllClusters(false); } };
})();
