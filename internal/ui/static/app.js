// Tasker dashboard: draws DAGs with dagre (vendored), refreshes the
// overview and keeps task pages live by polling. No framework, no inline
// script (the Content-Security-Policy forbids it).
(function () {
  'use strict';

  var SVGNS = 'http://www.w3.org/2000/svg';
  var CODES = { p: 'pending', r: 'in_progress', w: 'waiting_for_retry', c: 'complete', e: 'error',
    x: 'cancelled', m: 'resolved_manually', s: 'skipped', t: 'template' };

  function svg(tag, attrs, parent) {
    var el = document.createElementNS(SVGNS, tag);
    for (var k in attrs) { el.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(el); }
    return el;
  }

  // drawGraph lays the DAG out with dagre and draws it as SVG. Each node
  // is <g class="node state-STATE" data-step="NAME">.
  function drawGraph(box) {
    var g = JSON.parse(box.dataset.graph);
    var n = g.names.length;
    var G = new dagre.graphlib.Graph();
    G.setGraph({ rankdir: n > 40 ? 'TB' : 'LR', nodesep: 12, ranksep: 36, marginx: 10, marginy: 10 });
    G.setDefaultEdgeLabel(function () { return {}; });
    var labels = [];
    for (var i = 0; i < n; i++) {
      var name = g.names[i];
      var label = name.length > 28 ? name.slice(0, 27) + '…' : name;
      labels.push(label);
      G.setNode(String(i), { width: Math.max(60, 7.2 * label.length + 22), height: 28 });
    }
    for (var c = 0; c < n; c++) {
      for (var j = 0; j < g.parents[c].length; j++) { G.setEdge(String(g.parents[c][j]), String(c)); }
    }
    dagre.layout(G);
    var gg = G.graph();
    var root = svg('svg', { 'class': 'dag', width: Math.ceil(gg.width), height: Math.ceil(gg.height),
      viewBox: '0 0 ' + Math.ceil(gg.width) + ' ' + Math.ceil(gg.height), role: 'img' });
    var defs = svg('defs', {}, root);
    var marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7,
      orient: 'auto-start-reverse' }, defs);
    svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', 'class': 'arrowhead' }, marker);
    var edges = svg('g', { 'class': 'edges' }, root);
    G.edges().forEach(function (e) {
      var pts = G.edge(e).points;
      var d = 'M' + pts.map(function (p) { return p.x.toFixed(1) + ',' + p.y.toFixed(1); }).join(' L');
      svg('path', { d: d, 'class': 'edge', 'marker-end': 'url(#arrow)' }, edges);
    });
    var nodes = svg('g', { 'class': 'nodes' }, root);
    var els = [];
    for (var k = 0; k < n; k++) {
      var nd = G.node(String(k));
      var state = CODES[g.states.charAt(k)] || 'unknown';
      var ng = svg('g', { 'class': 'node state-' + state, 'data-step': g.names[k], 'data-state': state,
        transform: 'translate(' + (nd.x - nd.width / 2).toFixed(1) + ',' + (nd.y - nd.height / 2).toFixed(1) + ')' }, nodes);
      if (g.task) { ng.setAttribute('tabindex', '0'); ng.setAttribute('role', 'button'); }
      var title = svg('title', {}, ng);
      title.textContent = g.names[k] + ' (' + state + ')';
      svg('rect', { width: nd.width, height: nd.height, rx: 5, ry: 5 }, ng);
      var t = svg('text', { x: nd.width / 2, y: nd.height / 2 + 4, 'text-anchor': 'middle' }, ng);
      t.textContent = labels[k];
      els.push(ng);
    }
    box.textContent = '';
    box.appendChild(root);
    // Small graphs are drawn larger (the viewBox scales them).
    var room = box.clientWidth - 4;
    var scale = Math.min(1.5, room / gg.width);
    if (scale > 1) {
      root.style.width = Math.floor(gg.width * scale) + 'px';
      root.style.height = Math.floor(gg.height * scale) + 'px';
    }
    box.dataset.drawn = String(n);
    return els;
  }

  function updateNodes(nodes, states) {
    if (!nodes || states.length !== nodes.length) { return false; }
    for (var i = 0; i < nodes.length; i++) {
      var st = CODES[states.charAt(i)] || 'unknown';
      if (nodes[i].getAttribute('data-state') !== st) {
        nodes[i].setAttribute('data-state', st);
        nodes[i].setAttribute('class', 'node state-' + st + (nodes[i].classList.contains('selected') ? ' selected' : ''));
        nodes[i].querySelector('title').textContent = nodes[i].getAttribute('data-step') + ' (' + st + ')';
      }
    }
    return true;
  }

  function markSelected(nodes, name) {
    (nodes || []).forEach(function (el) {
      el.classList.toggle('selected', el.getAttribute('data-step') === name);
    });
  }

  function taskPage(page) {
    var id = page.dataset.task;
    var version = page.dataset.version;
    var poll = parseInt(page.dataset.poll, 10) || 2000;
    var box = document.getElementById('dag');
    var nodes = null;
    if (box && box.dataset.graph) {
      try { nodes = drawGraph(box); } catch (err) { box.textContent = 'Could not draw the graph: ' + err; }
      markSelected(nodes, page.dataset.step);
    }

    // The message of an action just done stays until another step is picked.
    var done = new URLSearchParams(location.search).get('done');

    function query() {
      var q = new URLSearchParams();
      if (done) { q.set('done', done); }
      if (page.dataset.step) { q.set('step', page.dataset.step); }
      if (page.dataset.state) { q.set('state', page.dataset.state); }
      if (page.dataset.page && page.dataset.page !== '1') { q.set('page', page.dataset.page); }
      return q.toString();
    }

    var refreshing = null;
    function refresh() {
      if (refreshing) { return refreshing; }
      refreshing = fetch('/ui/tasks/' + id + '/fragments?' + query(), { credentials: 'same-origin' })
        .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
        .then(function (parts) {
          ['head', 'panel', 'table', 'audit'].forEach(function (k) {
            var el = document.getElementById(k);
            if (el && typeof parts[k] === 'string') { el.innerHTML = parts[k]; }
          });
        })
        .finally(function () { refreshing = null; });
      return refreshing;
    }

    function select(name) {
      page.dataset.step = name;
      done = null;
      var q = query();
      history.replaceState(null, '', location.pathname + (q ? '?' + q : ''));
      markSelected(nodes, name);
      return refresh();
    }

    page.addEventListener('click', function (ev) {
      var t = ev.target.closest('[data-select], g.node');
      if (!t || ev.metaKey || ev.ctrlKey || ev.shiftKey) { return; }
      ev.preventDefault();
      select(t.getAttribute('data-select') || t.getAttribute('data-step'));
    });
    page.addEventListener('keydown', function (ev) {
      var t = ev.target.closest('g.node');
      if (t && (ev.key === 'Enter' || ev.key === ' ')) { ev.preventDefault(); select(t.getAttribute('data-step')); }
    });

    var terminal = false;
    function tick() {
      if (document.hidden) { return schedule(); }
      fetch('/ui/tasks/' + id + '/live' + (nodes ? '?graph=1' : ''), { credentials: 'same-origin' })
        .then(function (r) {
          if (r.status === 401) { location.reload(); throw new Error('login required'); }
          if (!r.ok) { throw new Error('HTTP ' + r.status); }
          return r.json();
        })
        .then(function (d) {
          terminal = d.terminal;
          if (d.states && !updateNodes(nodes, d.states)) { location.reload(); return; }
          if (d.version !== version) {
            version = d.version;
            page.dataset.version = version;
            return refresh();
          }
        })
        .catch(function () {})
        .finally(schedule);
    }
    function schedule() { setTimeout(tick, terminal ? poll * 5 : poll); }
    schedule();
  }

  function overview(el) {
    var every = parseInt(el.dataset.refresh, 10) || 5000;
    function tick() {
      if (document.hidden) { return setTimeout(tick, every); }
      fetch('/ui/overview/fragment', { credentials: 'same-origin' })
        .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.text(); })
        .then(function (html) { el.innerHTML = html; })
        .catch(function () {})
        .finally(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  function start() {
    var page = document.getElementById('task-page');
    if (page) { taskPage(page); }
    var tpl = document.querySelector('.template-dag');
    if (tpl) { drawGraph(tpl); }
    var ov = document.getElementById('overview');
    if (ov) { overview(ov); }
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
