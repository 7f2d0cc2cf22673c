// kq dashboard: polls the JSON API every second and redraws. Plain JS, no build step.
"use strict";

// With `kq dashboard --token T`, open the page as /#token=T: the token is kept for this tab.
const hashToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (hashToken) {
  sessionStorage.setItem("kq-token", hashToken);
  history.replaceState(null, "", location.pathname);
}
const token = sessionStorage.getItem("kq-token");

const $ = (selector) => document.querySelector(selector);
const ENDED = new Set(["SUCCESS", "FAILURE", "REVOKED", "REJECTED"]);
const COLORS = ["#2b7bb9", "#d9822b", "#3a9d5d", "#c23030", "#8f5bb5", "#6b7785"];
let selected = null;  // the task shown in the detail view
const drawn = {};     // the last JSON each part was drawn from, to redraw only on change

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function api(path, options = {}) {
  const headers = {"Content-Type": "application/json"};
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {...options, headers});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function changed(part, data) {
  const text = JSON.stringify(data);
  if (drawn[part] === text) return false;
  drawn[part] = text;
  return true;
}

function drawOverview(o) {
  $("#broker").textContent = o.broker;
  $("#throughput").textContent = `${o.throughput.toFixed(1)} tasks/s (last ${o.window} s)`;
  $("#no-events").hidden = o.events > 0;
  if (changed("workers", o.workers)) {
    $("#workers tbody").innerHTML = o.workers.map((w) => `<tr data-worker="${esc(w.name)}">
      <td>${esc(w.name)}</td><td class="${w.online ? "online" : "offline"}">${w.online ? "online" : "OFFLINE"}</td>
      <td>${esc(w.active ?? "-")}</td><td>${esc(w.processed ?? "-")}</td>
      <td>${w.pool ? esc(`${w.pool.name} × ${w.pool.concurrency}`) : "-"}</td>
      <td>${esc((w.loadavg || []).map((x) => x.toFixed(2)).join(" ") || "-")}</td></tr>`).join("")
      || `<tr><td colspan="6" class="muted">no worker seen yet</td></tr>`;
    const limits = o.workers.flatMap((w) => Object.entries(w.rate_limits || {}).map(
      ([task, rate]) => `<tr><td>${esc(w.name)}</td><td>${esc(task)}</td><td>${esc(rate)}</td></tr>`));
    $("#rate-limits tbody").innerHTML = limits.join("")
      || `<tr><td colspan="3" class="muted">no per-worker limits</td></tr>`;
  }
  $("#counts").innerHTML = Object.entries(o.counts).map(([state, n]) =>
    `<span class="count" id="count-${state}"><b>${n}</b> ${state}</span>`).join("");
  $("#queues tbody").innerHTML = o.queues.map((q) =>
    `<tr data-queue="${esc(q.name)}"><td>${esc(q.name)}</td><td>${esc(q.depth ?? "?")}</td></tr>`).join("");
  drawChart(o.history);
  if (changed("failures", o.failures)) {
    $("#failures").innerHTML = o.failures.map((f) => `<li><a href="#" data-open="${esc(f.id)}">${esc(f.name || f.id)}</a>
      on ${esc(f.worker)}: <code>${esc(f.exception)}</code></li>`).join("") || `<li class="muted">none</li>`;
  }
}

function drawChart(history) {
  const canvas = $("#depth-chart");
  const ctx = canvas.getContext("2d");
  const {width, height} = canvas;
  ctx.clearRect(0, 0, width, height);
  const series = Object.entries(history.depths);
  const all = series.flatMap(([, values]) => values).filter((v) => v != null);
  const top = Math.max(1, ...all);
  const n = history.times.length;
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#6b7785";
  ctx.fillText(`max ${top}`, 4, 12);
  ctx.fillText(n ? `last ${Math.round(history.times[n - 1] - history.times[0])} s` : "no samples yet", 4, height - 4);
  series.forEach(([name, values], i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    values.forEach((v, j) => {
      const x = n > 1 ? (j / (n - 1)) * (width - 8) + 4 : 4;
      const y = height - 16 - ((v ?? 0) / top) * (height - 32);
      j ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillText(name, width - 80, 14 + 12 * i);
  });
}

function drawTasks(tasks) {
  if (!changed("tasks", tasks)) return;
  $("#tasks tbody").innerHTML = tasks.map((t) => `<tr data-task-id="${esc(t.id)}" class="state-${esc(t.state)}">
    <td><a href="#" data-open="${esc(t.id)}">${esc(t.id.slice(0, 8))}…</a></td><td>${esc(t.name)}</td>
    <td class="state">${esc(t.state)}</td><td>${esc(t.worker)}</td>
    <td>${t.runtime == null ? "" : `${t.runtime.toFixed(3)} s`}</td>
    <td>${ENDED.has(t.state) ? "" : `<button class="revoke" data-revoke="${esc(t.id)}">Revoke</button>`}
        ${t.state === "FAILURE" ? `<button class="retry" data-retry="${esc(t.id)}">Retry</button>` : ""}</td>
    </tr>`).join("") || `<tr><td colspan="6" class="muted">no tasks seen</td></tr>`;
}

async function showDetail() {
  if (!selected) return;
  const d = await api(`/api/tasks/${encodeURIComponent(selected)}`);
  $("#detail-section").hidden = false;
  $("#detail-id").textContent = d.id;
  $("#detail").textContent = [
    `name:     ${d.name ?? "?"}`, `state:    ${d.state ?? "?"}  (backend: ${d.stored ?? "nothing stored"})`,
    `worker:   ${d.worker ?? "-"}`, `args:     ${d.args ?? "?"}`, `kwargs:   ${d.kwargs ?? "?"}`,
    `runtime:  ${d.runtime ?? "-"}`, `result:   ${d.result ?? "-"}`,
    ...(d.exception ? [`error:    ${d.exception}`] : []), ...(d.traceback ? ["", d.traceback] : []),
  ].join("\n");
}

async function refresh() {
  try {
    const query = new URLSearchParams({state: $("#filter-state").value, name: $("#filter-name").value});
    const [overview, tasks] = await Promise.all([api("/api/overview"), api(`/api/tasks?${query}`)]);
    drawOverview(overview);
    drawTasks(tasks.tasks);
    await showDetail();
    $("#status").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("#status").className = "muted";
  } catch (error) {
    $("#status").textContent = `error: ${error.message}`;
    $("#status").className = "error";
  }
}

document.addEventListener("click", async (event) => {
  const target = event.target;
  try {
    if (target.dataset.open) {
      event.preventDefault();
      selected = target.dataset.open;
      await showDetail();
    } else if (target.dataset.revoke) {
      target.disabled = true;
      await api(`/api/tasks/${encodeURIComponent(target.dataset.revoke)}/revoke`, {method: "POST"});
      target.textContent = "revoking…";
    } else if (target.dataset.retry) {
      target.disabled = true;
      const sent = await api(`/api/tasks/${encodeURIComponent(target.dataset.retry)}/retry`, {method: "POST"});
      target.textContent = `sent ${sent.id.slice(0, 8)}…`;
    }
  } catch (error) {
    $("#status").textContent = `error: ${error.message}`;
    $("#status").className = "error";
  }
});

$("#rate-limit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const answer = await api("/api/rate_limit", {method: "POST",
      body: JSON.stringify({task: $("#rl-task").value, rate: $("#rl-rate").value})});
    $("#rl-result").textContent = Object.entries(answer.replies).map(([worker, reply]) =>
      `${worker}: ${reply.ok ?? reply.error}`).join("; ");
  } catch (error) {
    $("#rl-result").textContent = `error: ${error.message}`;
  }
});

refresh();
setInterval(refresh, 1000);
