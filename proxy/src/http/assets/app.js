// The xbus proxy's live page: polls the admin API once a second and tails the event stream.
// Plain JavaScript, no dependencies. With a bearer token configured, open the page as
// /#token=TOKEN: the token is sent in the Authorization header, never in a URL the server logs.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const HISTORY = 300; // seconds of the plot
const TAIL_ROWS = 200;
const samples = []; // {in, out}: messages/s, one a second
let prev = null;

const $ = (id) => document.getElementById(id);

function fmt(n) {
  if (n === null || n === undefined) return "–";
  if (typeof n !== "number") return String(n);
  if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(2) + "G";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function time(us) {
  if (!us) return "–";
  return new Date(us / 1000).toLocaleTimeString();
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

async function getJson(path) {
  const r = await fetch(path, { headers });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function counters(s, dt) {
  const st = s.stats;
  const rate = (now, before) => (prev && dt > 0 ? Math.max(0, (now - before) / dt) : null);
  const p = prev ? prev.stats : null;
  const items = [
    ["publishers", st.frontend.connections],
    ["subscribers", st.backend.connections],
    ["messages in", st.frontend.messages_in, rate(st.frontend.messages_in, p && p.frontend.messages_in)],
    ["messages out", st.backend.messages_out, rate(st.backend.messages_out, p && p.backend.messages_out)],
    ["bytes in", st.frontend.bytes_in, rate(st.frontend.bytes_in, p && p.frontend.bytes_in)],
    ["bytes out", st.backend.bytes_out, rate(st.backend.bytes_out, p && p.backend.bytes_out)],
    ["dropped", st.dropped_messages, rate(st.dropped_messages, p && p.dropped_messages), st.dropped_messages > 0],
    ["unrouted", st.unrouted_messages, rate(st.unrouted_messages, p && p.unrouted_messages)],
    ["subscriptions", st.subscriptions],
    ["event streams", s.stream_clients],
    ["topics", s.topics],
    ["last seq", st.last_seq],
    ["recorded", st.recorded_messages],
  ];
  const box = $("counters");
  box.textContent = "";
  for (const [name, value, r, warn] of items) {
    const d = document.createElement("div");
    d.className = "card" + (warn ? " warn" : "");
    const label = document.createElement("div");
    label.className = "muted";
    label.textContent = name;
    const v = document.createElement("div");
    v.className = "v";
    v.textContent = fmt(value);
    d.append(label, v);
    if (r !== undefined) {
      const rr = document.createElement("div");
      rr.className = "r";
      rr.textContent = r === null ? "…/s" : fmt(r) + "/s";
      d.appendChild(rr);
    }
    box.appendChild(d);
  }
  $("meta").textContent = "v" + s.version + " · epoch " + s.epoch + " · up " + Math.round(s.uptime_s) + " s";
}

function plot() {
  const c = $("plot");
  const w = (c.width = c.clientWidth || 1000);
  const h = (c.height = 180);
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...samples.map((p) => Math.max(p.in, p.out)));
  g.fillStyle = "#7d8794";
  g.font = "11px sans-serif";
  g.fillText(fmt(max) + "/s", 4, 12);
  const line = (key, color) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((p, i) => {
      // the last minute at least, up to five as the samples accumulate
      const span = Math.max(60, Math.min(HISTORY, samples.length));
      const x = w - (samples.length - 1 - i) * (w / span);
      const y = h - 4 - (p[key] / max) * (h - 20);
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  };
  line("in", "#4fb3ff");
  line("out", "#7ee787");
}

function connections(list) {
  const body = $("connections").tBodies[0];
  body.textContent = "";
  $("conn-count").textContent = "(" + list.total + ")";
  for (const c of list.connections) {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    if (c.dropped_messages > 0) tr.className = "bad";
    else if (c.queued_messages > 0) tr.className = "warn";
    cell(tr, c.id);
    cell(tr, c.side === "frontend" ? "publisher" : "subscriber");
    cell(tr, c.remote);
    cell(tr, c.socket_type + " " + c.zmtp);
    cell(tr, c.identity || "");
    cell(tr, time(c.connected_since_us));
    cell(tr, fmt(c.messages_in), "n");
    cell(tr, fmt(c.messages_out), "n");
    cell(tr, c.side === "backend" ? c.subscriptions : "", "n");
    cell(tr, c.side === "backend" ? fmt(c.queued_messages) : "", "n");
    cell(tr, c.side === "backend" ? fmt(c.dropped_messages) : "", "n");
    body.appendChild(tr);
  }
}

function topics(t) {
  const body = $("topics").tBodies[0];
  body.textContent = "";
  $("topic-count").textContent = "(" + t.total + (t.overflow_messages ? ", " + t.overflow_messages + " messages past the limit" : "") + ")";
  for (const x of t.topics) {
    const tr = document.createElement("tr");
    cell(tr, x.topic);
    cell(tr, fmt(x.rate), "n");
    cell(tr, fmt(x.messages), "n");
    cell(tr, x.last_seq, "n");
    cell(tr, time(x.last_seen_us));
    body.appendChild(tr);
  }
}

async function poll() {
  try {
    const [s, c, t] = await Promise.all([
      getJson("api/v1/stats"),
      getJson("api/v1/connections?sort=id&limit=200"),
      getJson("api/v1/topics?limit=20"),
    ]);
    const now = performance.now() / 1000;
    const dt = prev ? now - prev.at : 0;
    counters(s, dt);
    if (prev && dt > 0) {
      samples.push({
        in: Math.max(0, (s.stats.frontend.messages_in - prev.stats.frontend.messages_in) / dt),
        out: Math.max(0, (s.stats.backend.messages_out - prev.stats.backend.messages_out) / dt),
      });
      while (samples.length > HISTORY) samples.shift();
    }
    document.body.dataset.samples = String(samples.length);
    prev = { at: now, stats: s.stats };
    plot();
    connections(c);
    topics(t);
    $("status").textContent = "live";
    $("status").className = "status ok";
  } catch (e) {
    $("status").textContent = "proxy unreachable (" + e.message + ")";
    $("status").className = "status bad";
  }
}

// The event stream, read with fetch (event names are the events' own, which EventSource
// cannot listen to without knowing them).
let tail = null;

function addRow(ev) {
  const body = $("tail").tBodies[0];
  const tr = document.createElement("tr");
  if (ev.event === "gap") {
    tr.className = "gap";
    cell(tr, "");
    cell(tr, new Date().toLocaleTimeString());
    cell(tr, "gap");
    cell(tr, ev.data, "payload");
  } else {
    let d;
    try {
      d = JSON.parse(ev.data);
    } catch (e) {
      d = { topic: ev.event, payload: ev.data };
    }
    cell(tr, ev.id || "", "n");
    cell(tr, time(d.time_us));
    cell(tr, d.topic);
    cell(tr, JSON.stringify(d.payload), "payload");
  }
  body.insertBefore(tr, body.firstChild);
  while (body.rows.length > TAIL_ROWS) body.deleteRow(body.rows.length - 1);
}

async function startTail(prefix) {
  if (tail) tail.abort();
  const ctl = new AbortController();
  tail = ctl;
  $("tail").tBodies[0].textContent = "";
  const q = "api/v1/stream?envelope=true" + (prefix ? "&prefix=" + encodeURIComponent(prefix) : "");
  $("tail-status").textContent = prefix ? "events under " + JSON.stringify(prefix) : "every event";
  try {
    const r = await fetch(q, { headers, signal: ctl.signal });
    if (!r.ok) {
      $("tail-status").textContent = "stream refused: HTTP " + r.status;
      return;
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = { event: "message", data: "", id: "" };
        let has = false;
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const k = line.indexOf(":");
          const field = k < 0 ? line : line.slice(0, k);
          const val = k < 0 ? "" : line.slice(k + 1).replace(/^ /, "");
          if (field === "data") { ev.data += (ev.data ? "\n" : "") + val; has = true; }
          else if (field === "event") ev.event = val;
          else if (field === "id") ev.id = val;
        }
        // a stream replaced by a new filter may still hold a chunk: drop it
        if (tail !== ctl) return;
        if (has) addRow(ev);
      }
    }
    $("tail-status").textContent = "stream ended";
  } catch (e) {
    if (e.name !== "AbortError") $("tail-status").textContent = "stream failed: " + e.message;
  }
}

$("filter-form").addEventListener("submit", (e) => {
  e.preventDefault();
  startTail($("filter").value);
});

poll();
setInterval(poll, 1000);
startTail("");
